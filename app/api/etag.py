"""ETag on every successful GET, and 304 for a matching If-None-Match."""

from __future__ import annotations

from app.answers.service import etag_of


class ETagMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body = bytearray()

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            await _finish(scope, send, start, bytes(body))

        await self.app(scope, receive, capture)


async def _finish(scope, send, start: dict, body: bytes) -> None:
    headers = list(start.get("headers", []))
    if start.get("status") != 200:
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    tag = next((v for k, v in headers if k.lower() == b"etag"), None)
    if tag is None:
        tag = etag_of(body).encode()
        headers.append((b"etag", tag))
    wanted = dict(scope["headers"]).get(b"if-none-match", b"")
    if tag in [t.strip().removeprefix(b"W/") for t in wanted.split(b",")] or wanted.strip() == b"*":
        headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-type")]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
