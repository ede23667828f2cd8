"""
What operators see: Prometheus metrics (L{metrics}), JSON log lines
(L{jsonlog}), the access log with tokens redacted (L{access_log}), and log
lines summed up at most once a second (L{throttle}).

Observes and imports nothing of the server: the core tells it what happens
through L{sse_twisted.observer.Observer}. Anything may import it.
"""
