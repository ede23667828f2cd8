"""
ssedemo's behaviour on aiohttp with aiohttp-sse: the benchmark's aiohttp peer.

    python aiohttp_peer.py PORT

GET /sse sends the greeting, then every broadcast; POST /api with a JSON body
broadcasts {"message": "Something changed"} to every open stream.
"""

import asyncio
import itertools
import json
import sys

from aiohttp import web
from aiohttp_sse import sse_response

GREETING = json.dumps({"message": "Gotcha"})
CHANGED = json.dumps({"message": "Something changed"})

# One queue per open stream; a broadcast puts the event in each.
queues = web.AppKey("queues", set)
event_ids = web.AppKey("event_ids", itertools.count)


async def stream(request):
    queue = asyncio.Queue()
    async with sse_response(request) as response:
        await response.send(GREETING, retry=3000)
        request.app[queues].add(queue)
        try:
            while response.is_connected():
                data, event_id = await queue.get()
                await response.send(data, id=event_id)
        finally:
            request.app[queues].discard(queue)
    return response


async def api(request):
    try:
        await request.json()
    except ValueError:
        return web.json_response({"error": "body is not valid JSON"}, status=400)
    event_id = str(next(request.app[event_ids]))
    for queue in request.app[queues]:
        queue.put_nowait((CHANGED, event_id))
    return web.json_response({"id": event_id, "delivered": len(request.app[queues])})


def make_app():
    app = web.Application()
    app[queues] = set()
    app[event_ids] = itertools.count(1)
    app.router.add_get("/sse", stream)
    app.router.add_post("/api", api)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        backlog=4096,
        access_log=None,
        print=None,
        # Streams whose client has gone wait in queue.get() until the next
        # event: don't let them hold up a stop for the default 60 s.
        shutdown_timeout=2,
    )
