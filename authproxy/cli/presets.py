"""`authproxy presets [NAME]`: the built-in provider presets and their defaults."""

from __future__ import annotations

import argparse
import sys

import yaml

from authproxy.config.presets import load_preset, preset_names


def cmd_presets(args: argparse.Namespace) -> int:
    if args.name:
        preset = load_preset(args.name)
        if preset is None:
            print(f"no preset {args.name!r}; presets: {', '.join(preset_names())}", file=sys.stderr)
            return 1
        print(f"# {preset.name}: {preset.description}")
        if preset.required_headers:
            print(f"# routes using it must set headers: {', '.join(preset.required_headers)}")
        if preset.sensitive_scopes:
            print(
                f"# sensitive scopes, each for a route of its own (not asked for by default): "
                f"{', '.join(preset.sensitive_scopes)}"
            )
        for key, hint in preset.required_keys.items():
            print(f"# routes using it must set {key}: {hint}")
        if preset.params:
            given = ", ".join(f"{p.name}: {p.example or '...'}" for p in preset.params.values())
            print(f"# parameters, given as preset: {{name: {preset.name}, {given}}}")
            for param in preset.params.values():
                print(f"#   {param.usage()}")
        print(yaml.safe_dump(preset.route, sort_keys=False), end="")
        return 0
    width = max(map(len, preset_names()))
    for name in preset_names():
        preset = load_preset(name)
        assert preset is not None
        print(f"{name:{width}} {preset.description}")
    return 0
