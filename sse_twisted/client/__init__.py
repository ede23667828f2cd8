"""
The other end of an event stream: what a Twisted program uses to follow a
stream (L{sse_twisted.client.eventsource}), to publish an event
(L{sse_twisted.client.publish}), and the WHATWG parser both the client and
the server's tests read streams with (L{sse_twisted.client.parser}).

This wing may use the core's pure modules, treq and Twisted; nothing in the
server may import it.
"""
