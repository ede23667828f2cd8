"""
ssedemo: a Server-Sent Events server on Twisted and Klein.

The top level is the core, which every deployment runs, from the bottom up:
L{event} (events to wire bytes), L{log} (ids, history, replay) and
L{observer} (what is counted), L{hub} (open streams, topics, fan-out),
L{stream} and L{fanout} (one open response; the send loop), L{web},
L{overload} and L{app} (HTTP), L{service} (timers, graceful stop) and
L{tap} (options; what twistd starts). L{testing} helps users' tests.

Each concern beside the core has a subpackage: L{auth} (who may subscribe
and publish), L{redis} (the shared log), L{transport} (sockets and
connections), L{ops} (metrics and logs) and L{workers} (several processes
on one port). The other end is a wing the server never imports: L{client}
(an C{EventSource} and a publisher for Twisted programs) and L{cli} (the
C{ssedemo} command). Each subpackage's docstring says what it may use and
what must not import it; C{lint-imports} (run by C{make test}) checks the
layers.
"""
