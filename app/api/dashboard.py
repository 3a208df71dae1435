"""GET / : the dashboard, static files shipped in the package (app/static), no build step."""

from __future__ import annotations

import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from app.errors import NotFound

router = APIRouter(include_in_schema=False)

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The ETag middleware tags every 200; browsers revalidate each time and get a 304 while unchanged.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if not _NAME.fullmatch(name) or suffix not in TYPES:
        raise NotFound(f"no static file {name}")
    file = resources.files("app").joinpath("static", name)
    if not file.is_file():
        raise NotFound(f"no static file {name}")
    return Response(file.read_bytes(), media_type=TYPES[suffix], headers=HEADERS)


@router.get("/")
async def dashboard() -> Response:
    return _static("index.html")


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    return _static(name)
