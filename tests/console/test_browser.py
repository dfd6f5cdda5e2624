"""The console in a real headless Chromium against a real proxy, fake token server and fake upstream.

Selenium's calls block, and the proxy serves from this test's event loop: every browser step runs in
a thread (`asyncio.to_thread`). Chromium and chromedriver come from Debian (`chromium`,
`chromium-driver`); .ci/run installs them and sets AUTHPROXY_TEST_REQUIRE_BROWSER, so CI fails
instead of skipping when they are missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import wait_until

SECRET = "SENTINEL-browser-client-secret"
API_KEY = "SENTINEL-browser-api-key"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _require_browser() -> None:
    if Path(CHROMIUM).exists() and Path(DRIVER).exists():
        try:
            import selenium  # noqa: F401
        except ImportError:
            pass
        else:
            return
    message = "needs chromium, chromium-driver (apt-get) and selenium (pip install -e '.[test]')"
    if os.environ.get("AUTHPROXY_TEST_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1280,800")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = await asyncio.to_thread(webdriver.Chrome, options=options, service=Service(executable_path=DRIVER))
    try:
        yield browser
    finally:
        await asyncio.to_thread(browser.quit)


def config(upstream_url: str, token_url: str) -> dict:
    return {
        "store": {"kind": "memory"},
        "routes": {
            "api": {
                "upstream": upstream_url,
                "headers": {"x-api-key": API_KEY},
                "auth": {
                    "grant": "client_credentials",
                    "token_url": token_url,
                    "client_id": "cid",
                    "client_secret": SECRET,
                },
            },
            "portal": {
                "upstream": upstream_url,
                "auth": {
                    "grant": "authorization_code",
                    "authorize_url": token_url + "/authorize",
                    "token_url": token_url,
                    "client_id": "cid",
                    "client_secret": SECRET,
                },
            },
        },
    }


async def step(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def wait_for(browser: Any, condition: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)


def text_of(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css).text


def fetch_json(browser: Any, path: str) -> str:
    """What the page's own script would get from `path` (same origin, same cookies)."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text()).then(done, e => done('ERROR ' + e));",
        path,
    )


def severe_logs(browser: Any) -> list[dict[str, Any]]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def assert_no_secret(text: str, tokens: list[str]) -> None:
    for secret in (SECRET, API_KEY, *tokens):
        assert secret not in text, f"{secret!r} leaked"


async def test_console_in_chromium(make_proxy, upstream, token_server, fake_clock, driver, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    proxy = await make_proxy(config(upstream.url, token_server.url), clock=fake_clock)
    await wait_until(lambda: len(token_server.requests) == 1)
    await proxy.credential().wait_idle()
    await fake_clock.advance(600)  # 3000 s of the 3600 s token left: "50m"

    await step(driver.get, proxy.at("/-/"))
    api = 'article[data-route="api"]'
    portal = 'article[data-route="portal"]'
    await step(wait_for, driver, lambda b: text_of(b, f'{api} [data-field="expires"]').startswith("49m"))
    assert await step(text_of, driver, f'{api} [data-field="state"]') == "valid"
    assert await step(text_of, driver, f'{portal} [data-field="state"]') == "login required"
    login = await step(driver.find_element, By.CSS_SELECTOR, f'{portal} a[data-field="login"]')
    assert login.text == "Log in" and login.get_attribute("href") == proxy.at("/-/login/portal")
    assert await step(severe_logs, driver) == []

    # Renew now: a new token, and the countdown starts again from its full lifetime
    renew = await step(driver.find_element, By.CSS_SELECTOR, f'{api} button[data-action="renew"]')
    await step(renew.click)
    await step(wait_for, driver, lambda b: text_of(b, f'{api} [data-field="expires"]').startswith(("1h 0m", "59m")))
    assert len(token_server.requests) == 2 and proxy.credential().cached().access_token == "at-2"

    # Try it: through the proxy, the fake upstream gets the injected token; the page shows none
    await step(driver.find_element(By.ID, "try-path").clear)
    await step(driver.find_element(By.ID, "try-path").send_keys, "/echo?from=console")
    await step(driver.find_element(By.CSS_SELECTOR, '#try-method option[value="POST"]').click)
    await step(driver.find_element(By.ID, "try-body").send_keys, '{"hello": "world"}')
    headers = "X-Note: it's\nX-Authproxy-Key: typed-by-the-user-key"
    await step(driver.find_element(By.ID, "try-headers").send_keys, headers)
    await step(driver.find_element(By.ID, "try-send").click)
    await step(wait_for, driver, lambda b: text_of(b, "#try-status").startswith("200"))
    seen = upstream.seen[-1]
    assert (seen.method, seen.raw_path, seen.body) == ("POST", "/echo?from=console", b'{"hello": "world"}')
    assert seen.headers["Authorization"] == "Bearer at-2" and seen.headers["x-api-key"] == API_KEY
    assert '"hello": "world"' in await step(text_of, driver, "#try-out")

    # ... and it appears in the request list; its detail shows the heads, redacted
    await step(wait_for, driver, lambda b: "/api/echo?from=console" in text_of(b, "#request-rows"))
    await step(driver.find_element(By.CSS_SELECTOR, "#request-rows tr").click)
    await step(wait_for, driver, lambda b: "Sent upstream" in text_of(b, "#detail-body"))
    detail = await step(text_of, driver, "#detail-body")
    assert "Authorization: [redacted]" in detail and "x-api-key: [redacted]" in detail

    # Copy as curl: points at the proxy, quoted for shells, no secret
    await step(driver.find_element(By.ID, "copy-curl").click)
    curl = await step(text_of, driver, "#try-snippet")
    assert curl == (
        f"curl -sS -X POST '{proxy.url}/api/echo?from=console' -H 'X-Note: it'\\''s' "
        """-H 'X-Authproxy-Key: '"$AUTHPROXY_KEY" --data-binary '{"hello": "world"}'"""
    )
    await step(driver.find_element(By.ID, "copy-httpx").click)
    httpx_snippet = await step(text_of, driver, "#try-snippet")
    assert 'os.environ["AUTHPROXY_KEY"]' in httpx_snippet and "typed-by-the-user-key" not in httpx_snippet

    tokens = ["at-1", "at-2"]
    source = await step(lambda: driver.page_source)
    assert_no_secret(source, tokens)
    for path in ("/-/console/state", "/-/console/requests", "/-/console/requests/1"):
        fetched = await step(fetch_json, driver, path)
        json.loads(fetched)
        assert_no_secret(fetched, tokens)
    assert await step(severe_logs, driver) == []

    await _screenshots(driver, tmp_path)


async def _screenshots(driver: Any, tmp_path: Path) -> None:
    for scheme in ("light", "dark"):
        await step(
            driver.execute_cdp_cmd,
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        for name, width, height in (("desktop", 1280, 800), ("phone", 390, 844)):
            await step(driver.set_window_size, width, height)
            await step(driver.execute_script, "window.scrollTo(0, 0)")
            path = tmp_path / f"console-{name}-{scheme}.png"
            assert await step(driver.save_screenshot, str(path)) and path.stat().st_size > 10_000
            await step(driver.execute_script, "document.getElementById('requests').scrollIntoView()")
            path = tmp_path / f"console-{name}-{scheme}-requests.png"
            assert await step(driver.save_screenshot, str(path)) and path.stat().st_size > 10_000
    keep = os.environ.get("AUTHPROXY_SCREENSHOTS")  # a directory to copy the PNGs to, for a person to look at
    if keep:
        for png in tmp_path.glob("*.png"):
            shutil.copy(png, keep)


async def test_a_cross_site_form_cannot_act(make_proxy, upstream, token_server, driver) -> None:
    """A page on another origin (localhost vs 127.0.0.1) auto-submits a form to Renew now: 403, nothing renewed."""
    proxy = await make_proxy(config(upstream.url, token_server.url))
    await wait_until(lambda: len(token_server.requests) == 1)
    await step(driver.get, proxy.at("/-/"))  # the console is open in this browser (its session cookie is set)
    target = proxy.at("/-/console/routes/api/renew")
    evil = web.Application()

    async def page(_request: web.Request) -> web.Response:
        return web.Response(
            content_type="text/html",
            text=f'<form id="f" method="post" action="{target}"></form><script>document.getElementById("f").submit()'
            "</script>",
        )

    evil.router.add_get("/", page)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await step(driver.get, f"http://localhost:{port}/")  # another site than 127.0.0.1
        await step(wait_for, driver, lambda b: "cross_site_refused" in b.page_source)
    finally:
        await runner.cleanup()
    assert '"code": "cross_site_refused"' in await step(lambda: driver.page_source)
    assert len(token_server.requests) == 1
