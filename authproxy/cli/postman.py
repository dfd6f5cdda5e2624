"""`authproxy postman -c FILE -o DIR`: a Postman collection and environment for the team, no secret in them.

The same files the console offers for download (console/postman.py): a folder per route, a
`{{base_<route>}}` variable per route pointing at the proxy, Auth "No Auth" (team mode: the member's
proxy key as an empty `{{authproxy_key}}` Bearer variable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from authproxy.config.load import load_config
from authproxy.console.postman import collection, environment, proxy_base

EXIT_CONFIG = 2


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("postman", help="write a Postman collection and environment pointing at the proxy")
    parser.add_argument("-c", "--config", default="config.yaml", help="config file (default config.yaml)")
    parser.add_argument("-o", "--output", default=".", help="directory to write the two files to (default .)")
    parser.add_argument("--base-url", help="where clients reach the proxy (default: from `listen:`)")
    parser.add_argument("--name", default="authproxy", help="the collection's and environment's name")
    parser.set_defaults(func=cmd_postman)


def cmd_postman(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    base = (args.base_url or proxy_base(config)).rstrip("/")
    if not base.startswith(("http://", "https://")):
        print(f"--base-url: {base!r} must start with http:// or https://, e.g. http://127.0.0.1:8080", file=sys.stderr)
        return EXIT_CONFIG
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {
            out / f"{args.name}.postman_collection.json": collection(config, base, args.name),
            out / f"{args.name}.postman_environment.json": environment(config, base, args.name),
        }
        for path, document in files.items():
            path.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        print(f"-o {args.output}: cannot write there ({exc.strerror}); pick a writable directory", file=sys.stderr)
        return EXIT_CONFIG
    for path in files:
        print(f"wrote {path}")
    print(f"Import both into Postman and pick the {args.name!r} environment; requests go to {base}.")
    return 0
