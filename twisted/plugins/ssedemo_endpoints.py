from sse_twisted.eager import EagerSystemdParser, EagerTCPParser
from sse_twisted.tls import SparingSSLParser

eagertcp = EagerTCPParser()
eagersystemd = EagerSystemdParser()
sparingssl = SparingSSLParser()
