from sse_twisted.eager import EagerSystemdParser, EagerTCPParser

eagertcp = EagerTCPParser()
eagersystemd = EagerSystemdParser()
