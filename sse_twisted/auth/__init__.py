"""
Who may subscribe and publish, and until when.

A L{gate.Gate} decides per request which topics a stream may have:
L{jwt} (tokens), L{forward} (asks the application) and open access are its
implementations; L{publish} guards C{/publish}; L{expiry} ends streams whose
token expires; L{config} turns the command-line options into a gate.

May use the core below the web layer (L{sse_twisted.event},
L{sse_twisted.hub}) and L{sse_twisted.ops}. HTTP answers (401, 403,
C{WWW-Authenticate}) are the web layer's: nothing here renders a response,
and the hub, the log and the transports never import this package.
"""
