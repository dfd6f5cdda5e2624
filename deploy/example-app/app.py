"""Example app for the compose sidecar: calls the API through authproxy with no credentials.

Every APP_INTERVAL seconds (default 30) it GETs each path in APP_PATHS from AUTHPROXY_URL and
prints the status and the start of the body. Replace it with your own service: all it knows is
the proxy's URL, never a token or a secret.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

BASE = os.environ.get("AUTHPROXY_URL", "http://authproxy:8080")
PATHS = os.environ.get("APP_PATHS", "/-/ready").split()
INTERVAL = float(os.environ.get("APP_INTERVAL", "30"))


def get(path: str) -> tuple[int, str]:
    """One request with no Authorization header; the proxy's JSON errors say what is missing."""
    try:
        with urllib.request.urlopen(BASE + path, timeout=15) as response:
            return response.status, response.read(300).decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read(300).decode(errors="replace")


def main() -> None:
    while True:
        for path in PATHS:
            status, body = get(path)
            print(f"GET {path} -> {status} {body}", flush=True)
        time.sleep(INTERVAL)


if __name__ == "__main__":
    main()
