"""
C{--workers N}: several processes serving one port.

L{supervisor} is the parent: it binds the port, starts and restarts the
workers, and stops them. L{child} is one worker's main
(C{python -m sse_twisted.workers.child}), which builds the same service as
twistd from L{sse_twisted.tap}.

The supervisor uses only L{sse_twisted.transport}; the child, an entry
point, is the one module besides the plugin that imports
L{sse_twisted.tap}. Nothing imports the child.
"""
