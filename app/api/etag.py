"""ETag on every successful GET, and 304 for a matching If-None-Match."""

from __future__ import annotations

from app.answers.encoding import etag_of


class ETagMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body = bytearray()
        passing: list[bool] = []  # [True]: streamed through, [False]: a 304 sent, the body dropped

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                tag = _tag(message)
                if message.get("status") == 200 and tag is not None:
                    # the answer knows its tag before its body (a streamed download): decide now, stream the body
                    if _matches(scope, tag):
                        await _not_modified(send, start)
                        passing.append(False)
                    else:
                        await send(message)
                        passing.append(True)
                return
            if passing:
                if passing[0]:
                    await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            await _finish(scope, send, start, bytes(body))

        await self.app(scope, receive, capture)


def _tag(start: dict) -> bytes | None:
    return next((v for k, v in start.get("headers", []) if k.lower() == b"etag"), None)


def _matches(scope, tag: bytes) -> bool:
    wanted = dict(scope["headers"]).get(b"if-none-match", b"")
    return tag in [t.strip().removeprefix(b"W/") for t in wanted.split(b",")] or wanted.strip() == b"*"


async def _not_modified(send, start: dict) -> None:
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type", b"content-disposition")]
    await send({"type": "http.response.start", "status": 304, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _finish(scope, send, start: dict, body: bytes) -> None:
    headers = list(start.get("headers", []))
    if start.get("status") != 200:
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    tag = _tag(start)
    if tag is None:
        tag = etag_of(body).encode()
        headers.append((b"etag", tag))
    if _matches(scope, tag):
        await _not_modified(send, {**start, "headers": headers})
        return
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
