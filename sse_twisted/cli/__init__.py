"""
The C{ssedemo} command (the server itself is C{twistd ssedemo}): C{tail}
follows a stream, C{publish} sends one event, C{token} mints a JWT that a
server started with C{--jwt-key} accepts. Each verb is a module with its
options and its run; L{sse_twisted.cli.main} picks the verb.

It may use L{sse_twisted.client}, the core's pure modules and Twisted;
nothing in the server may import it.
"""
