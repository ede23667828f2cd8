from sse_twisted.eager import EagerTCPParser

eagertcp = EagerTCPParser()
