"""
The shared event log on Redis Streams (C{--redis}).

L{client} speaks RESP to Redis over Twisted (hiredis parses) and reconnects;
L{log} implements L{sse_twisted.log.EventLog} on a stream: publish, the
reader that feeds the hub in order, and replay.

May use the core's log, hub and event modules. Only the composition root
(L{sse_twisted.tap}) and the web layer (for its errors) import it; the hub
knows the log through L{sse_twisted.log.EventLog} alone.
"""
