"""/docs (Swagger UI) and /redoc with their assets served by the service, and the OpenAPI document.

The assets come from the installed package `fastapi-offline` (Swagger UI and ReDoc bundles): no CDN,
so the docs work on a machine with no internet (SPEC section 5). The OpenAPI document is FastAPI's,
generated from the routes and the answer models (app.scoring.schemas, app.api.schemas...), with the event contract added
to its components (the ingest handler reads its body raw) and every error answer typed as
application/problem+json.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response

from app.api.downloads import DOWNLOADABLE
from app.api.schemas import ERROR_DOCS, PROBLEM_MEDIA
from app.errors import NotFound
from app.ingest.answers import EventBatch
from app.tables import CSV_MEDIA, XLSX_MEDIA

router = APIRouter(include_in_schema=False)
ASSETS = "/docs/assets"
FILES = {  # name in the package: media type
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
HEADERS = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
SWAGGER_PARAMETERS = {
    "validatorUrl": None,  # never ask an online validator
    "persistAuthorization": True,
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
    "tryItOutEnabled": False,
}
TAGS = [
    {"name": "ingest", "description": "Sources post dossier events (hồ sơ): SPEC sections 3 and 5."},
    {"name": "units", "description": "The registry of units: the nation, 34 provinces, 3,321 communes."},
    {
        "name": "kpis",
        "description": "KPI reads: one unit, rankings, series, sectors. Tỷ lệ giải quyết đúng hạn, điểm Chỉ số 766, "
        "hồ sơ đang giải quyết, hồ sơ quá hạn... Every answer carries the previous period and the change.",
    },
    {"name": "network", "description": "The central assessment network (SPEC section 6): pull feed and push receiver."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics."},
]
DESCRIPTION = """Real-time performance assessment of Vietnam's two-tier local government (chính quyền địa phương hai cấp).

Sources post dossier events to `POST /api/v1/events`; the KPIs of every unit — the nation `VN`, a province,
a commune — are read back in real time, each with the previous period and the change.

**Authentication**: `Authorization: Bearer <api key>`. Keys are made with the CLI, which prints the token once:
`chiso keys create --scope ingest --unit 46 --name "Huế one-stop centre"` (scopes `ingest`, `read`, `admin`).
Reads may be public (`PUBLIC_READ=true`); posting never is.

**Errors** are `application/problem+json` (RFC 9457), with `errors: [{loc, msg}]` for validation.

**Polling**: every GET answer has an `ETag` and honours `If-None-Match` with `304`.
"""


# ReDoc's attribution shows a logo from Redocly's CDN: the service's own image instead.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
# The pages load nothing from elsewhere, whatever a bundle might try (Swagger UI's inline start-up
# script and ReDoc's inline styles are allowed).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:",
    "X-Content-Type-Options": "nosniff",
}


@lru_cache(maxsize=len(FILES))
def _asset_bytes(name: str) -> bytes:
    data = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    if name == "redoc.standalone.js":
        data = data.replace(REDOC_LOGO, ASSETS.encode() + b"/favicon.png")
    return data


def _asset(name: str) -> Response:
    if name not in FILES:
        raise NotFound(f"no docs asset {name}")
    return Response(_asset_bytes(name), media_type=FILES[name], headers=HEADERS)


def _page(html: HTMLResponse) -> HTMLResponse:
    html.headers.update(PAGE_HEADERS)
    return html


@router.get(ASSETS + "/{name}")
async def docs_asset(name: str) -> Response:
    return _asset(name)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _page(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title="chiso API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _page(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title="chiso API",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
    )


NOT_MODIFIED = {
    "description": "Not modified: the answer's `ETag` matches `If-None-Match` (every GET honours it, so pollers cost "
    "almost nothing while nothing changed).",
    "headers": {"ETag": {"description": "The answer's entity tag.", "schema": {"type": "string"}}},
}


def _problem_media(schema: dict[str, Any]) -> None:
    """Every 4xx/5xx answer documented as application/problem+json (FastAPI puts a model under application/json)."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content")
                if not content or status[:1] not in ("4", "5") or "application/json" not in content:
                    continue
                if status == "503" and "Ready" in str(content["application/json"].get("schema")):
                    continue  # /readyz answers its own JSON when not ready
                moved = content.pop("application/json")
                if moved.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                    # FastAPI's default 422: app.api.errors renders it as a problem like any other
                    moved["schema"] = {"$ref": "#/components/schemas/Problem"}
                    response["description"] = ERROR_DOCS[422][0]
                content[PROBLEM_MEDIA] = {**moved, **content.get(PROBLEM_MEDIA, {})}


DOWNLOAD_PARAMS = [
    {
        "name": "format",
        "in": "query",
        "required": False,
        "description": "`csv` or `xlsx` for a download of every row (limit/offset do not apply; more than "
        "`DOWNLOAD_MAX_ROWS`, default 100,000, is a `422`); the `Accept` header may ask instead. Default JSON.",
        "schema": {"enum": ["json", "csv", "xlsx"], "type": "string", "examples": ["xlsx"]},
    },
    {
        "name": "lang",
        "in": "query",
        "required": False,
        "description": "A download's header row: Vietnamese titles (`vi`), English (`en`) or the JSON paths (`key`).",
        "schema": {"enum": ["vi", "en", "key"], "type": "string", "default": "vi", "examples": ["vi"]},
    },
]


def _download_media(schema: dict[str, Any]) -> None:
    """The downloadable GET operations list CSV and XLSX beside JSON, and the `format`/`lang` parameters."""
    for path in DOWNLOADABLE:
        operation = schema["paths"].get(path, {}).get("get")
        if operation is None:
            continue
        operation.setdefault("parameters", []).extend(DOWNLOAD_PARAMS)
        content = operation["responses"]["200"].setdefault("content", {})
        binary = {"schema": {"type": "string", "format": "binary"}}
        content[CSV_MEDIA] = dict(binary)
        content[XLSX_MEDIA] = dict(binary)
        operation["responses"]["200"].setdefault("headers", {})["Content-Disposition"] = {
            "description": 'Downloads: `attachment; filename="chiso-<what>-<unit>-<period label or window>.<csv|xlsx>"`.',
            "schema": {"type": "string"},
        }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of `app`, generated once."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary="Real-time KPIs of administrative procedures for every province and commune of Vietnam.",
        description=DESCRIPTION,
        routes=app.routes,
        tags=TAGS,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    batch = EventBatch.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(batch.pop("$defs", {}))
    components["EventBatch"] = batch
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's own 422, replaced by Problem
        components.pop(unused, None)
    _problem_media(schema)
    _download_media(schema)
    public_read = app.state.settings.public_read
    for path in schema["paths"].values():
        for method, operation in path.items():
            if method == "get":
                operation["responses"].setdefault("304", NOT_MODIFIED)
                if public_read and operation.get("security"):
                    operation["security"] = [*operation["security"], {}]  # PUBLIC_READ=true: no key needed
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets; generate /openapi.json with `build_openapi`."""
    app.include_router(router)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
