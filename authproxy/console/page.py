"""The console's HTML, rendered on the server: it reads well before the script runs (and without it).

The script (static/console.js) then updates the cells in place from the JSON endpoints. Every value
is escaped; nothing inline (the Content-Security-Policy forbids inline script and style).
"""

from __future__ import annotations

from html import escape
from typing import Any

from authproxy.upstream.egress import NO_EGRESS

STATES = ("empty", "valid", "renewing", "backing_off", "login_required", "failed", "not_configured")
LOGIN_GRANTS = frozenset(("authorization_code",))
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def advice(token: dict[str, Any] | None) -> str:
    if not token:
        return ""
    return token.get("message") or token.get("last_error_detail") or ""


def route_card(route: dict[str, Any], store: str, admin: bool) -> str:
    name = route["name"]
    token = route.get("token")
    state = token["state"] if token else "none"
    actions = []
    if admin:
        if route["grant"] in LOGIN_GRANTS or state == "login_required":
            actions.append(f'<a class="button primary" data-field="login" href="/-/login/{_e(name)}">Log in</a>')
        if token is not None:
            actions.append(f'<button type="button" data-action="renew" data-route="{_e(name)}">Renew now</button>')
        if route["grant"] in LOGIN_GRANTS or route["grant"] == "refresh_token":
            actions.append(f'<button type="button" data-action="logout" data-route="{_e(name)}">Log out</button>')
    egress = route.get("egress")
    rows = [
        ("Prefix", "prefix", route["prefix"]),
        ("Upstream", "upstream", route["upstream"]),
        ("Grant", "grant", route["grant"]),
        ("Expires in", "expires", "-" if not token or token.get("expires_in") is None else f"{token['expires_in']} s"),
        ("Last refresh", "refreshed", (token or {}).get("last_refresh_at") or "-"),
        ("Requests", "requests", route["requests"]),
        ("Errors", "errors", route["errors"]),
        ("Store", "store", store if token else "-"),
    ]
    if egress is not None:  # {"via": proxy (password masked) or "direct", "from": the key or variable that chose it}
        rows.append(("Egress", "egress", egress_text(egress)))
    cells = "".join(f'<div><dt>{label}</dt><dd data-field="{key}">{_e(value)}</dd></div>' for label, key, value in rows)
    return (
        f'<article class="route" data-route="{_e(name)}" aria-labelledby="route-{_e(name)}">'
        f'<header><h3 id="route-{_e(name)}">{_e(name)}</h3>'
        f'<span class="badge state-{_e(state)}" data-field="state">{_e(state.replace("_", " "))}</span></header>'
        f'<dl>{cells}</dl><p class="advice" data-field="advice">{_e(advice(token))}</p>'
        f'<div class="actions">{"".join(actions)}</div><p class="result" data-field="result" role="status"></p>'
        "</article>"
    )


def render(document: dict[str, Any], *, csrf: str, viewer: str, admin: bool) -> str:
    routes = document["routes"]
    store = document["store"].get("kind") or document["store"].get("where") or "-"
    store = str(store)
    cards = "".join(route_card(r, store, admin) for r in routes) or "<p>No routes are configured.</p>"
    options = "".join(f'<option value="{_e(r["name"])}">{_e(r["name"])} ({_e(r["prefix"])})</option>' for r in routes)
    methods = "".join(f'<option value="{m}">{m}</option>' for m in METHODS)
    try_it = (
        '<section id="try" aria-labelledby="try-h"><h2 id="try-h">Try it</h2>'
        '<form id="try-form" class="try">'
        f'<label>Route <select name="route" id="try-route">{options}</select></label>'
        f'<label>Method <select name="method" id="try-method">{methods}</select></label>'
        '<label class="wide">Path '
        '<input name="path" id="try-path" value="/" autocomplete="off" spellcheck="false"></label>'
        '<label class="wide">Headers <span class="hint">(one <code>Name: value</code> a line; in team mode add '
        "<code>X-Authproxy-Key: your proxy key</code>, which the copied snippets read from $AUTHPROXY_KEY)</span>"
        '<textarea name="headers" id="try-headers" rows="3" spellcheck="false"></textarea></label>'
        '<label class="wide">Body <textarea name="body" id="try-body" rows="4" spellcheck="false"></textarea></label>'
        '<div class="actions wide"><button type="submit" class="primary" id="try-send">Send</button>'
        '<button type="button" id="copy-curl">Copy as curl</button>'
        '<button type="button" id="copy-httpx">Copy as Python (httpx)</button></div>'
        "</form>"
        '<pre id="try-snippet" class="snippet" hidden></pre>'
        '<div id="try-result" class="result-box" hidden aria-live="polite">'
        '<p><strong id="try-status"></strong> <span id="try-time"></span></p>'
        '<details><summary>Response headers</summary><pre id="try-head"></pre></details>'
        '<pre id="try-out"></pre></div></section>'
        if admin
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="csrf-token" content="{_e(csrf)}">
<meta name="viewer" content="{"admin" if admin else "member"}">
<title>authproxy console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/-/console/static/console.css">
<script src="/-/console/static/console.js" defer></script>
</head><body>
<header class="top"><h1>authproxy</h1>
<p id="meta">version {_e(document["version"])} · {_e(document["listen"])} · viewing as {_e(viewer)}</p>
<nav aria-label="Sections"><a href="#routes">Routes</a> <a href="#requests">Requests</a>
{'<a href="#try">Try it</a> ' if admin else ""}<a href="#postman">Postman</a></nav></header>
<main>
<section id="routes" aria-labelledby="routes-h"><h2 id="routes-h">Routes</h2>
<div class="cards" id="route-cards">{cards}</div></section>
<section id="requests" aria-labelledby="requests-h"><h2 id="requests-h">Recent requests</h2>
<form id="filters" class="filters">
<label>Route <select name="route" id="filter-route"><option value="">all</option>{options}</select></label>
<label>Status <input name="status" id="filter-status" placeholder="e.g. 5xx, 401, error" size="18"></label>
<label>Client <input name="client" id="filter-client" placeholder="name or address" size="14"></label>
</form>
<div class="table-wrap"><table id="request-table"><thead><tr>
<th scope="col">Time</th><th scope="col">Client</th><th scope="col">Route</th><th scope="col">Method</th>
<th scope="col">Path</th><th scope="col">Status</th><th scope="col">Duration</th><th scope="col">Retried</th>
<th scope="col">Error</th></tr></thead><tbody id="request-rows"></tbody></table></div>
<p id="requests-empty" class="hint">No requests yet.</p>
<div id="detail" class="result-box" hidden><h3>Request <span id="detail-id"></span>
<button type="button" id="detail-close">Close</button></h3><pre id="detail-body"></pre></div>
</section>
{try_it}
<section id="postman" aria-labelledby="postman-h"><h2 id="postman-h">Postman</h2>
<p>A collection with a folder per route and an environment whose <code>base_&lt;route&gt;</code> variables point at
this proxy; Auth is "No Auth" (authproxy injects the credentials), so no secret is in either file.</p>
<p class="actions"><a class="button" href="/-/console/postman/collection.json" download>Download collection</a>
<a class="button" href="/-/console/postman/environment.json" download>Download environment</a></p>
</section>
</main></body></html>
"""


def egress_text(egress: dict[str, str] | str) -> str:
    """`direct`, or the proxy (password masked) and the key or variable that chose it (console.js: egressText)."""
    if isinstance(egress, str):
        return egress
    if egress["from"] == NO_EGRESS:
        return egress["via"]  # nothing configured anywhere: "direct" says it all
    return f"{egress['via']} (from {egress['from']})"
