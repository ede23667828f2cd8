"""
ssedemo: a Server-Sent Events server on Twisted and Klein.
"""
