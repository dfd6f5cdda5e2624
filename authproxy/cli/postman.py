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
