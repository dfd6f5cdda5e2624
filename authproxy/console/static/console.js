// authproxy console: polls the JSON endpoints and updates cells in place (no framework, no build step).
"use strict";
(function () {
  const POLL_MS = 2000;
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const csrf = meta("csrf-token");
  const admin = meta("viewer") === "admin";
  const $ = (id) => document.getElementById(id);
  const clocks = {}; // route -> {expiresAt, refreshedAt} in local milliseconds

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${r}s`;
    return `${r}s`;
  }
  // page.py egress_text: "direct" when nothing is configured anywhere, else the proxy and what chose it.
  function egressText(egress) {
    if (typeof egress === "string") return egress;
    if (egress.from === "no egress proxy configured or in the environment") return egress.via;
    return egress.via + " (from " + egress.from + ")";
  }
  function fmtAgo(s) {
    if (s < 5) return "just now";
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }
  function setText(el, text) {
    if (el && el.textContent !== String(text)) el.textContent = String(text);
  }
  async function getJSON(url) {
    const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await res.json();
    if (!res.ok) throw new Error((body.error && body.error.message) || `HTTP ${res.status}`);
    return body;
  }
  async function post(url, data) {
    const res = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(data || {}),
    });
    const body = await res.json();
    if (!res.ok) throw new Error((body.error && body.error.message) || `HTTP ${res.status}`);
    return body;
  }

  // -- routes ------------------------------------------------------------------------------------
  function updateRoute(route, serverNow) {
    const card = document.querySelector(`article.route[data-route="${CSS.escape(route.name)}"]`);
    if (!card) return;
    const token = route.token;
    const state = token ? token.state : "none";
    const badge = card.querySelector('[data-field="state"]');
    const cls = `badge state-${state}`;
    if (badge.className !== cls) badge.className = cls;
    setText(badge, state.replace(/_/g, " "));
    const now = Date.now();
    const refreshed = token && token.last_refresh_at ? Date.parse(token.last_refresh_at) : null;
    clocks[route.name] = {
      expiresAt: token && token.expires_in !== null && token.expires_in !== undefined ? now + token.expires_in * 1000 : null,
      refreshedAgo: refreshed !== null ? (serverNow - refreshed) / 1000 : null,
      polledAt: now,
    };
    setText(card.querySelector('[data-field="requests"]'), route.requests);
    setText(card.querySelector('[data-field="errors"]'), route.errors);
    setText(card.querySelector('[data-field="advice"]'), token ? token.message || token.last_error_detail || "" : "");
    if (route.egress !== undefined && route.egress !== null) {
      let egress = card.querySelector('[data-field="egress"]');
      if (!egress) {
        const div = document.createElement("div");
        div.innerHTML = "<dt>Egress</dt><dd data-field=\"egress\"></dd>";
        card.querySelector("dl").appendChild(div);
        egress = div.querySelector("dd");
      }
      setText(egress, egressText(route.egress));
    }
    if (admin && state === "login_required" && !card.querySelector('[data-field="login"]')) {
      const a = document.createElement("a");
      a.className = "button primary";
      a.dataset.field = "login";
      a.href = `/-/login/${encodeURIComponent(route.name)}`;
      a.textContent = "Log in";
      card.querySelector(".actions").prepend(a);
    }
  }
  function tick() {
    const now = Date.now();
    for (const [name, c] of Object.entries(clocks)) {
      const card = document.querySelector(`article.route[data-route="${CSS.escape(name)}"]`);
      if (!card) continue;
      setText(card.querySelector('[data-field="expires"]'), c.expiresAt === null ? "-" : fmtSeconds((c.expiresAt - now) / 1000));
      setText(
        card.querySelector('[data-field="refreshed"]'),
        c.refreshedAgo === null ? "-" : fmtAgo(c.refreshedAgo + (now - c.polledAt) / 1000),
      );
    }
  }
  async function pollState() {
    try {
      const doc = await getJSON("/-/console/state");
      const serverNow = Date.parse(doc.now);
      doc.routes.forEach((r) => updateRoute(r, serverNow));
      setText($("meta"), `version ${doc.version} · ${doc.listen} · up ${fmtSeconds(doc.uptime_s)} · viewing as ${doc.viewer.name}`);
      tick();
    } catch (err) {
      setText($("meta"), `cannot reach the proxy: ${err.message}`);
    }
  }
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const route = button.dataset.route;
    const result = button.closest("article").querySelector('[data-field="result"]');
    button.disabled = true;
    setText(result, `${button.textContent}…`);
    try {
      const out = await post(`/-/console/routes/${encodeURIComponent(route)}/${button.dataset.action}`);
      setText(result, out.ok ? (out.message || "Done.") : `${out.code || "failed"}: ${out.message || ""}`);
    } catch (err) {
      setText(result, err.message);
    } finally {
      button.disabled = false;
      pollState();
      pollRequests();
    }
  });

  // -- requests ----------------------------------------------------------------------------------
  const rows = new Map(); // id -> <tr>
  function requestRow(r) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.id = r.id;
    const time = new Date(r.at * 1000).toLocaleTimeString();
    const cells = [time, r.client || "-", r.route || "-", r.method, r.path, r.status, `${r.duration_ms} ms`, r.retried ? "yes" : "", r.error || ""];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      td.textContent = String(value);
      if (i === 4) { td.className = "path mono"; td.title = r.path; }
      if (i === 5) td.className = `s${String(r.status)[0]}`;
      tr.appendChild(td);
    });
    return tr;
  }
  async function pollRequests() {
    const params = new URLSearchParams();
    for (const [key, id] of [["route", "filter-route"], ["status", "filter-status"], ["client", "filter-client"]]) {
      const value = $(id).value.trim();
      if (value) params.set(key, value);
    }
    let data;
    try {
      data = await getJSON(`/-/console/requests?${params}`);
    } catch (err) {
      return;
    }
    const body = $("request-rows");
    const wanted = new Set(data.requests.map((r) => String(r.id)));
    for (const [id, tr] of rows) {
      if (!wanted.has(id)) { tr.remove(); rows.delete(id); }
    }
    let previous = null;
    for (const r of data.requests) { // newest first
      const id = String(r.id);
      let tr = rows.get(id);
      if (!tr) {
        tr = requestRow(r);
        rows.set(id, tr);
        if (previous) previous.after(tr); else body.prepend(tr);
      }
      previous = tr;
    }
    $("requests-empty").hidden = data.requests.length > 0;
  }
  async function showDetail(id) {
    try {
      const d = await getJSON(`/-/console/requests/${id}`);
      const lines = [`${d.method} ${d.path} -> ${d.status}  (${d.duration_ms} ms${d.retried ? ", retried after 401" : ""})`];
      lines.push(`time ${d.time}  client ${d.client || "-"}  route ${d.route || "-"}  request id ${d.request_id}`);
      if (d.error) lines.push(`error ${d.error}`);
      const head = (title, pairs) => { lines.push("", title); (pairs || []).forEach(([k, v]) => lines.push(`  ${k}: ${v}`)); };
      head("Request from the client", d.request && d.request.headers);
      if (d.request && d.request.body !== undefined) lines.push("", d.request.body);
      if (d.upstream) head(`Sent upstream: ${d.upstream.target}${d.upstream_ms !== undefined ? `  (upstream ${d.upstream_ms} ms)` : ""}`, d.upstream.headers);
      if (d.response) head("Upstream response", d.response.headers);
      if (d.response && d.response.body !== undefined) lines.push("", d.response.body);
      setText($("detail-id"), `#${d.id}`);
      setText($("detail-body"), lines.join("\n"));
      $("detail").hidden = false;
      $("detail-close").focus();
    } catch (err) {
      setText($("detail-body"), err.message);
      $("detail").hidden = false;
    }
  }
  $("request-rows").addEventListener("click", (e) => { const tr = e.target.closest("tr"); if (tr) showDetail(tr.dataset.id); });
  $("request-rows").addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr");
    if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); showDetail(tr.dataset.id); }
  });
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
  $("filters").addEventListener("input", () => { pollRequests(); });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); pollRequests(); });

  // -- Try it ------------------------------------------------------------------------------------
  function tryRequest() {
    const headers = $("try-headers").value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
      const i = l.indexOf(":");
      return i < 0 ? [l, ""] : [l.slice(0, i).trim(), l.slice(i + 1).trim()];
    });
    return { route: $("try-route").value, method: $("try-method").value, path: $("try-path").value || "/", headers, body: $("try-body").value };
  }
  function proxyUrl(t) {
    const card = document.querySelector(`article.route[data-route="${CSS.escape(t.route)}"] [data-field="prefix"]`);
    const prefix = card ? card.textContent.replace(/\/$/, "") : "";
    const path = t.path.startsWith("/") ? t.path : `/${t.path}`;
    return `${location.origin}${prefix}${path}`;
  }
  const shq = (s) => `'${String(s).replace(/'/g, "'\\''")}'`; // POSIX shell single quotes
  // A proxy key typed into Try it is the user's own secret: snippets read it from $AUTHPROXY_KEY instead.
  const KEY_HEADERS = ["x-authproxy-key", "authorization"];
  const isKey = (name) => KEY_HEADERS.includes(name.toLowerCase());
  const keyValue = (value) => (value.toLowerCase().startsWith("bearer ") ? "Bearer " : "");
  const pyq = (s) => JSON.stringify(String(s));
  function curlSnippet(t) {
    const parts = ["curl", "-sS", "-X", t.method, shq(proxyUrl(t))];
    t.headers.forEach(([k, v]) => parts.push("-H", isKey(k) ? `${shq(`${k}: ${keyValue(v)}`)}"$AUTHPROXY_KEY"` : shq(`${k}: ${v}`)));
    if (t.body) parts.push("--data-binary", shq(t.body));
    return parts.join(" ");
  }
  function httpxSnippet(t) {
    const keyed = t.headers.some(([k]) => isKey(k));
    const lines = keyed ? ["import os", ""] : [];
    lines.push("import httpx", "", `response = httpx.request(`, `    ${pyq(t.method)},`, `    ${pyq(proxyUrl(t))},`);
    const pyv = ([k, v]) => (isKey(k) ? `${pyq(keyValue(v))} + os.environ["AUTHPROXY_KEY"]` : pyq(v));
    if (t.headers.length) lines.push(`    headers={${t.headers.map(([k, v]) => `${pyq(k)}: ${pyv([k, v])}`).join(", ")}},`);
    if (t.body) lines.push(`    content=${pyq(t.body)},`);
    lines.push(")", "print(response.status_code)", "print(response.text)");
    return lines.join("\n");
  }
  async function copy(text) {
    $("try-snippet").hidden = false;
    setText($("try-snippet"), text);
    try { await navigator.clipboard.writeText(text); } catch (err) { /* shown above to copy by hand */ }
  }
  if (admin && $("try-form")) {
    $("copy-curl").addEventListener("click", () => copy(curlSnippet(tryRequest())));
    $("copy-httpx").addEventListener("click", () => copy(httpxSnippet(tryRequest())));
    $("try-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const send = $("try-send");
      send.disabled = true;
      $("try-result").hidden = false;
      setText($("try-status"), "Sending…");
      setText($("try-time"), "");
      try {
        const r = await post("/-/console/try", tryRequest());
        setText($("try-status"), `${r.status} ${r.reason || ""}`);
        $("try-status").className = `s${String(r.status)[0]}`;
        setText($("try-time"), `${r.duration_ms} ms${r.truncated ? " · body truncated" : ""}`);
        setText($("try-head"), r.headers.map(([k, v]) => `${k}: ${v}`).join("\n"));
        let text = r.body;
        if ((r.content_type || "").includes("json")) {
          try { text = JSON.stringify(JSON.parse(r.body), null, 2); } catch (err) { /* not JSON after all */ }
        }
        setText($("try-out"), text);
      } catch (err) {
        setText($("try-status"), err.message);
        setText($("try-out"), "");
      } finally {
        send.disabled = false;
        pollRequests();
        pollState();
      }
    });
  }

  pollState();
  pollRequests();
  setInterval(pollState, POLL_MS);
  setInterval(pollRequests, POLL_MS);
  setInterval(tick, 1000);
})();
