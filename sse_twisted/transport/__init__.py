"""
Sockets and connections, and nothing of events: the C{eagertcp:} endpoint
that writes at once (L{eager}), TLS ports (L{tls}), HTTP/2 connections that
keep quiet and slow streams well (L{http2}), and the open-files limit
(L{limits}).

May use Twisted and L{sse_twisted.ops}, never the rest of the package:
anything above may import it, and the endpoint plugins in
C{twisted/plugins/ssedemo_endpoints.py} do.
"""
