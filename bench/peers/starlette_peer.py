"""
ssedemo's behaviour on sse-starlette, served by uvicorn with uvloop and
httptools: the benchmark's Starlette peer.

    python starlette_peer.py PORT

GET /sse sends the greeting, then every broadcast; POST /api with a JSON body
broadcasts {"message": "Something changed"} to every open stream.
"""

import asyncio
import itertools
import json
import sys

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

GREETING = json.dumps({"message": "Gotcha"})
CHANGED = json.dumps({"message": "Something changed"})

# One queue per open stream; a broadcast puts the event in each.
queues = set()
event_ids = itertools.count(1)


async def stream(request):
    queue = asyncio.Queue()

    async def events():
        queues.add(queue)
        try:
            yield ServerSentEvent(GREETING, retry=3000)
            while True:
                yield await queue.get()
        finally:
            queues.discard(queue)

    return EventSourceResponse(events())


async def api(request):
    try:
        await request.json()
    except ValueError:
        return JSONResponse({"error": "body is not valid JSON"}, status_code=400)
    event_id = str(next(event_ids))
    event = ServerSentEvent(CHANGED, id=event_id)
    for queue in queues:
        queue.put_nowait(event)
    return JSONResponse({"id": event_id, "delivered": len(queues)})


app = Starlette(
    routes=[
        Route("/sse", stream, methods=["GET"]),
        Route("/api", api, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        backlog=4096,
        access_log=False,
        log_level="warning",
    )
