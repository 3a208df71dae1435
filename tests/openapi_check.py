"""Answers checked against the OpenAPI document of the app that gave them.

`Conformance(spec, hidden)` validates an answer against the schema that the document gives for its
path, method, status and media type (jsonschema, Draft 2020-12 as OpenAPI 3.1 uses): a status the
document does not list, a media type it does not name, a key an answer model does not know or a type
that differs is an error. `hidden` are the paths of the routes the app keeps out of the document on
purpose (the /docs and /redoc pages and their assets, /openapi.json, the dashboard); any other path
must be in the document. tests/conftest.py watches every `Service.client` with one, strictly (the
request that got a non-conforming answer raises), so every answer the suite receives is checked.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx
import orjson
from jsonschema import Draft202012Validator

JSON_MEDIA = ("application/json", "application/problem+json")

# one validator per (components, schema): apps of the same code share them across services and tests
_VALIDATORS: dict[tuple[int, str], Draft202012Validator] = {}


def _path_regex(template: str) -> re.Pattern:
    """`/units/{code}` -> a regex of the paths it matches (`{name:path}` spans slashes)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "^" + "".join((".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts) + "$"
    )


class NonConformingAnswer(AssertionError):
    """An answer the OpenAPI document does not describe."""


class Conformance:
    """Validates answers against the OpenAPI document; records which operations and statuses it saw."""

    def __init__(self, spec: dict, hidden: list[re.Pattern] | tuple = ()):
        self.spec = spec
        self.hidden = list(hidden)
        self.routes = [
            (_path_regex(template), template)
            for template in sorted(spec["paths"], key=lambda t: t.count("{"))  # literal paths first
        ]
        self.seen: Counter[tuple[str, str, str]] = Counter()
        self.errors: list[str] = []
        self.strict = False
        self._components = spec.get("components", {})
        self._components_key = hash(orjson.dumps(self._components, option=orjson.OPT_SORT_KEYS))

    @classmethod
    def of_app(cls, app: Any) -> Conformance:
        """The checker of a FastAPI app: its document (generated once, cached by the app) and hidden routes."""
        try:  # FastAPI >= 0.16x includes routers lazily: the app's routes are resolved through contexts
            from fastapi.routing import iter_route_contexts

            routes = list(iter_route_contexts(app.routes))
        except ImportError:
            routes = list(app.routes)
        hidden = [
            _path_regex(route.path_format or route.path)
            for route in routes
            if getattr(route, "include_in_schema", True) is False and (route.path_format or route.path)
        ]
        return cls(app.openapi(), hidden)

    def template(self, path: str) -> str | None:
        return next((t for rx, t in self.routes if rx.match(path)), None)

    def validator(self, schema: dict) -> Draft202012Validator:
        key = (self._components_key, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode())
        if key not in _VALIDATORS:
            root = {**schema, "components": self._components}  # "#/components/..." resolves here
            _VALIDATORS[key] = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
        return _VALIDATORS[key]

    def problems(self, method: str, path: str, status: int, media: str, body: bytes) -> list[str]:
        """What differs between the answer and the document; records the operation and status seen."""
        where = f"{method} {path} -> {status}"
        template = self.template(path)
        if template is None:
            if any(rx.match(path) for rx in self.hidden):
                return []
            return [f"{where}: path not in the OpenAPI document"]
        operation = self.spec["paths"][template].get(method.lower())
        if operation is None:
            return [f"{where}: method not documented"]
        self.seen[(method.upper(), template, str(status))] += 1
        response = operation["responses"].get(str(status))
        if response is None:
            return [f"{where}: status not documented (documented: {sorted(operation['responses'])})"]
        if status == 304:
            return []
        content = response.get("content", {})
        documented = next((m for m in content if m.split(";")[0] == media), None)
        if documented is None:
            return [f"{where}: media type {media!r} not documented ({sorted(content)})"]
        if media not in JSON_MEDIA:
            return []
        errors = sorted(self.validator(content[documented]["schema"]).iter_errors(orjson.loads(body)), key=str)
        return [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:3]]

    def check(self, method: str, path: str, status: int, media: str, body: bytes) -> None:
        found = self.problems(method, path, status, media, body)
        self.errors.extend(found)
        if found and self.strict:
            raise NonConformingAnswer("answer that differs from the OpenAPI document:\n" + "\n".join(found))

    async def record(self, response: httpx.Response) -> None:
        await response.aread()
        media = response.headers.get("content-type", "").split(";")[0].strip()
        self.check(response.request.method, response.request.url.path, response.status_code, media, response.content)

    def watch(self, client: httpx.AsyncClient, strict: bool = False) -> Conformance:
        """Check every answer `client` receives; `strict`: the request that gets a non-conforming one raises."""
        self.strict = self.strict or strict
        client.event_hooks["response"].append(self.record)
        return self

    def assert_ok(self) -> None:
        assert not self.errors, "answers that differ from the OpenAPI document:\n" + "\n".join(self.errors)
