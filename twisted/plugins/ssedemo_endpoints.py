from sse_twisted.transport.eager import EagerSystemdParser, EagerTCPParser
from sse_twisted.transport.tls import SparingSSLParser

eagertcp = EagerTCPParser()
eagersystemd = EagerSystemdParser()
sparingssl = SparingSSLParser()
