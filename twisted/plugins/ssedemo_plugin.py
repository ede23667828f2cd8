from twisted.application.service import ServiceMaker

ssedemo = ServiceMaker(
    "ssedemo",
    "sse_twisted.tap",
    "A Server-Sent Events server: demo page, /sse stream, publish API.",
    "ssedemo",
)
