"""Limits of a request: the time it may take to send its body (uvicorn has none), and the rate of
requests per key (RateLimiter, at the end).

A bound on the time a request may take to send its body.

uvicorn times out idle keep-alive connections, but a request whose body never ends (chunked, no
`Content-Length`) or trickles in a byte a second (slowloris) would be read for as long as the client
likes. This middleware gives every request `BODY_READ_TIMEOUT` seconds from its start to deliver the
whole body: past that the read raises, the request is answered `408` (application/problem+json) and
the connection is closed. Any answer sent before its body was read in full (a `401` before the body
of a post, a `413`) closes the connection too, so an unread body never keeps it open. Nothing blocks
a worker meanwhile: reads are awaited on the event loop, and a timed-out request stores nothing.
"""

from __future__ import annotations

import asyncio
import time

from app.errors import ChisoError, TooManyRequests


class BodyTimeout(ChisoError):
    status, title = 408, "Request timeout"
    headers = {"Connection": "close"}


class BodyReadTimeoutMiddleware:
    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.seconds or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False

        async def bounded_receive():
            nonlocal body_done
            if body_done:  # after the body: disconnect notices, unbounded
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(f"the request body was not received within {self.seconds:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def closing_send(message):
            if message["type"] == "http.response.start" and not body_done:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, bounded_receive, closing_send)


class RateLimiter:
    """A token bucket per key, per worker process."""

    def __init__(self, per_minute: int, retry_after: int):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)  # bursts of ten seconds' worth
        self.retry_after = retry_after
        self._buckets: dict[object, tuple[float, float]] = {}

    def check(self, key: object) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            raise TooManyRequests("this key sent too many requests", self.retry_after)
        self._buckets[key] = (tokens - 1, now)
