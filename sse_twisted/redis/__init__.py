"""
The shared event log on Redis Streams (C{--redis}).

L{address} parses where Redis is (one server over TCP, TLS or a unix
socket, or the master Redis Sentinel names) and L{options} the command
line's Redis options; L{tls} loads the TLS settings; L{client} speaks RESP
to Redis over Twisted (hiredis parses) and reconnects; L{sentinel} finds the
master and follows it through failovers; L{log} implements
L{sse_twisted.log.EventLog} on a stream: publish (with C{WAIT} for
replicas), the reader that feeds the hub in order, and replay; L{connect}
builds the log and its connections from an address.

May use the core's log, hub and event modules. Only the composition root
(L{sse_twisted.tap}) and the web layer (for its errors) import it; the hub
knows the log through L{sse_twisted.log.EventLog} alone.
"""
