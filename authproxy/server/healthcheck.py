"""`python -m authproxy.server.healthcheck [-c CONFIG]`: the container's HEALTHCHECK (Dockerfile, compose).

It reads the config `authproxy run` reads, so it knows what a URL written into the image cannot:
the port (`listen`, whichever variable set it), whether the listener speaks TLS (`tls:`), and that
/-/health moves to `admin.listen` when that is set. Exit 0 when /-/health answers 200, else 1 with
the reason on stderr.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from authproxy.config.load import load_config
from authproxy.config.schema import Config, split_listen
from authproxy.errors import ConfigError

DEFAULT_CONFIG = "/etc/authproxy/config.yaml"  # the image's (Dockerfile CMD)
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def health_url(config: Config) -> tuple[str, ssl.SSLContext | None]:
    """Where this process's own /-/health answers, and the TLS context to reach it (None: plain HTTP)."""
    if config.admin.listen is not None:  # the admin listener is plain HTTP
        host, port = split_listen(config.admin.listen)
        tls = False
    else:
        host, port = config.host, config.port
        tls = config.tls.cert_file is not None
    host = _WILDCARD.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    if not tls:
        return f"http://{shown}:{port}/-/health", None
    # Our own listener on loopback, whatever certificate it has (self-signed, a name not "127.0.0.1"):
    # this is a liveness probe that sends nothing secret, not a client that must trust the peer.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return f"https://{shown}:{port}/-/health", context


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m authproxy.server.healthcheck", description=__doc__)
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        url, context = health_url(config)
    except ConfigError as err:
        print(f"unhealthy: {err.render()}", file=sys.stderr)
        return 1
    except ValueError as err:  # a listen address split_listen refuses (load_config reports it first)
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        print(f"unhealthy: {url}: {getattr(err, 'reason', err)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
