"""
C{--workers N}: several processes serving one port.

L{supervisor} is the parent: it binds the port, starts and restarts the
workers, and stops them. L{fork} starts each worker as a fork of the
parent, with a reactor of its own; L{child} is what the worker then runs:
the same service as twistd builds from L{sse_twisted.tap}, on the socket
its parent bound.

They use only L{sse_twisted.transport} and L{sse_twisted.ops}; the server
a worker runs is given to them by L{sse_twisted.tap}, which nothing here
imports.
"""
