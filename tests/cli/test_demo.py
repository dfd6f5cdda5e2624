"""`authproxy demo` as a newcomer runs it: a subprocess, the printed curl commands, a live refresh, Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "deploy" / "postman" / "authproxy.postman_collection.json"
WAIT = 30.0  # seconds; only guards a hung demo, a healthy one answers in well under a second


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lines:
    """A subprocess stream read on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool]) -> str:
        while True:
            try:
                line = self._queue.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail("timed out waiting for the demo; so far:\n" + "".join(self.seen))
            if line is None:
                pytest.fail("the demo exited early:\n" + "".join(self.seen))
            self.seen.append(line)
            if predicate(line):
                return line


def event(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def curl(command: str) -> tuple[int, dict[str, Any]]:
    """Do what a printed `curl -s [-X METHOD] [--data BODY] URL` line does."""
    args = shlex.split(command)
    assert args[0] == "curl", command
    method, data, url = "GET", None, None
    i = 1
    while i < len(args):
        if args[i] == "-X":
            method, i = args[i + 1], i + 2
        elif args[i] in ("--data", "-d"):
            data, i = args[i + 1].encode(), i + 2
            method = "POST" if method == "GET" else method
        elif args[i].startswith("-"):
            i += 1
        else:
            url, i = args[i], i + 1
    assert url is not None, command
    return fetch(method, url, data)


def fetch(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def demo() -> Iterator[tuple[subprocess.Popen[str], Lines, Lines, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [*[sys.executable, "-m", "authproxy"], "demo", "--listen", f"127.0.0.1:{port}", "--token-lifetime", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield proc, Lines(proc.stdout), Lines(proc.stderr), f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT)


def test_demo_serves_refreshes_and_stops_on_sigint(demo) -> None:
    proc, out, err, base = demo
    err.wait_for(lambda line: event(line).get("event") == "listening")
    out.wait_for(lambda line: "Ctrl-C" in line)
    commands = [line.strip() for line in out.seen if line.strip().startswith("curl ")]
    assert len(commands) >= 3 and all(base in c for c in commands), out.seen
    assert f"curl -s '{base}/demo/hello?x=1'" in commands  # quoted: zsh would glob an unquoted `?`
    assert all(c.endswith("'") and f" '{base}/" in c for c in commands), commands

    # every printed curl command works, with no credentials in the client
    for command in commands:
        status, body = curl(command)
        assert status == 200, (command, body)
        if "/demo/" in command:
            assert "authorized_with" in body and "Authorization" not in json.dumps(body["headers_seen"])
    status, body = curl(next(c for c in commands if "POST" in c))
    assert body["you_sent"]["method"] == "POST" and body["you_sent"]["body_bytes"] > 0

    # the 2-second token is renewed in the background, and requests use the new one
    first = err.wait_for(lambda line: event(line).get("event") == "token_refreshed")
    second = err.wait_for(lambda line: event(line).get("event") == "token_refreshed")
    assert event(first)["route"] == event(second)["route"] == "demo"
    status, body = fetch("GET", f"{base}/demo/after-refresh")
    assert status == 200 and not body["authorized_with"].startswith("token #1,"), body

    # the example Postman/newman collection has no auth and runs against the demo as shipped
    collection = json.loads(COLLECTION.read_text())
    assert collection["auth"] == {"type": "noauth"}
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    variables["base"] = variables["base"].replace("http://127.0.0.1:8080", base)
    for item in collection["item"]:
        request = item["request"]
        url = request["url"].replace("{{base}}", variables["base"])
        body_text = request.get("body", {}).get("raw")
        headers = {h["key"]: h["value"] for h in request["header"]}
        status, _ = fetch(request["method"], url, body_text.encode() if body_text else None, headers)
        assert status == 200, item["name"]

    # Ctrl-C: a clean exit
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=WAIT) == 0
    err.wait_for(lambda line: event(line).get("event") == "stopped")
    assert "Traceback" not in "".join(err.seen)
    assert "demo-secret" not in "".join(err.seen + out.seen)  # even the demo's secret is redacted
