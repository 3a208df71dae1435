"""`Server-Timing: app;dur=<ms>` on every answer: the time from the request reaching the app to its
answer's start (its body made, for the answers that are buffered). A browser's developer tools show
it, and a client can tell the service's time from the time its request spent elsewhere (its own
process, the network, the worker's queue before the app: `make bench` reports both)."""

from __future__ import annotations

import time


class ServerTimingMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message):
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                headers = [*message.get("headers", []), (b"server-timing", f"app;dur={took:.1f}".encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
