"""/docs and /redoc in a real headless Chromium against a real `chiso serve`, with no network.

Every request the page makes to anything but the server itself is blocked and recorded: the test
fails if one was even attempted (the assets must come from the service, not a CDN), and the pages
must render every endpoint. Screenshots go to test-output/docs/ (git-ignored).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import new_database_url
from tests.helpers.browser import CHROMIUM_ARGS
from tests.helpers.server import ROOT, Server

SHOTS = ROOT / "test-output" / "docs"
LOCAL = ("127.0.0.1", "localhost", "::1", "[::1]")


@pytest.fixture
async def env(templates, pg_server, tmp_path) -> dict:
    url = await new_database_url("sqlite", templates, pg_server, tmp_path)
    return {"DATABASE_URL": url, "INGEST_RATE_PER_MINUTE": "0", "PUBLIC_READ": "false", "EXPORT_ENABLED": "false"}


def offline_page(browser, attempts: list[str], local: list[str]):
    """A page whose every request to another host is aborted and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, service_workers="block")
    page = context.new_page()

    def route(r):
        url = r.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:", "about:")) or host in LOCAL:
            local.append(url)
            r.continue_()
        else:
            attempts.append(url)
            r.abort("internetdisconnected")

    page.route("**/*", route)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(30_000)
    return page, errors


def test_docs_and_redoc_render_offline(env, chromium, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with Server(env, log=tmp_path / "serve.log") as server:
        spec = httpx.get(server.url + "/openapi.json").json()
        operations = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]
        assert len(operations) == 16  # the method-paths of SPEC section 5 (at-risk and silent since revision 3, drivers and report since 4)
        for page_path in ("/docs", "/redoc"):
            html = httpx.get(server.url + page_path)
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            assert "cdn." not in html.text and "fonts.googleapis" not in html.text, page_path
        asset = httpx.get(server.url + "/docs/assets/swagger-ui-bundle.js")
        assert asset.status_code == 200 and "javascript" in asset.headers["content-type"] and len(asset.content) > 100_000
        assert httpx.get(server.url + "/docs/assets/nothing.js").status_code == 404

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            attempts: list[str] = []
            local: list[str] = []

            # Swagger UI: every operation listed, the bearer scheme offered, an operation opens with its schema
            page, errors = offline_page(browser, attempts, local)
            page.goto(server.url + "/docs", wait_until="networkidle")
            expect(page.locator(".opblock").first).to_be_visible()
            expect(page.locator(".opblock")).to_have_count(len(operations))
            for method, path in operations:
                block = page.locator(f'.opblock-{method.lower()} .opblock-summary-path[data-path="{path}"]')
                expect(block).to_have_count(1)
            expect(page.locator(".btn.authorize")).to_be_visible()
            page.locator('.opblock-summary-path[data-path="/api/v1/units/{code}/kpis"]').click()
            expect(page.locator(".opblock.is-open")).to_contain_text("settlement_score")
            expect(page.locator(".opblock.is-open")).to_contain_text("application/problem+json")
            page.screenshot(path=str(SHOTS / "swagger.png"), full_page=False)
            assert not errors, errors

            # ReDoc: the menu names every operation
            page, errors = offline_page(browser, attempts, local)
            page.goto(server.url + "/redoc", wait_until="networkidle")
            expect(page.locator("[role=menuitem]", has_text="kpis").first).to_be_visible()
            expect(page.locator("[role=menuitem] .operation-type")).to_have_count(len(operations))  # under the tags
            for ops in spec["paths"].values():
                for op in ops.values():  # each operation's section, with its summary as heading
                    expect(page.locator("h2", has_text=op["summary"]).first).to_be_attached()
            page.screenshot(path=str(SHOTS / "redoc.png"), full_page=False)
            assert not errors, errors
            browser.close()

        assert not attempts, f"the docs tried the network: {attempts}"
        assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in local)
        assert any(u.endswith("/docs/assets/redoc.standalone.js") for u in local)
        assert any(u.endswith("/openapi.json") for u in local)
