"""Where a misplaced key belongs, and what YAML made of `${VAR}` in braces: the first-run mistakes.

A key one level too high (`client_id` beside `upstream:` instead of under `auth:`), a route written at
the top level, `{x-api-key: ${K}}` in a flow mapping: "unknown key" alone does not say what to do,
so these messages name the place the key belongs or the quoting that fixes it.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

from authproxy.config.checks import unknown
from authproxy.config.doc import sections
from authproxy.config.presets import preset_names

_NAMED = re.compile(r"^(routes|clients)\.[^.]+")
_ROUTE_KEYS = {"upstream", "preset", "auth", "prefix", "headers"}
_FLOW_WITH_VAR = re.compile(r"\{[^{}$]*:\s*\$\{")


@functools.cache
def _schema() -> tuple[tuple[str, str, bool], ...]:
    """(section pattern such as `routes.<name>.auth`, key, secret) for every key of the schema."""
    out = []
    for cls, path in sections():
        for name, f in cls.__dataclass_fields__.items():
            if f.metadata.get("internal") or (path.endswith(".<name>") and name == "name"):
                continue
            out.append((path, name, bool(f.metadata.get("secret"))))
    return tuple(out)


def unknown_key(key: str, path: str, value: Any, known: list[str]) -> str:
    """The message for `key`, not a key of the section at `path` (whose keys are `known`)."""
    if isinstance(value, dict) and (key in preset_names() or _ROUTE_KEYS & {str(k) for k in value}):
        if path == "":
            return f"{key!r} looks like a route: indent it two spaces under a `routes:` line (routes: {{{key}: ...}})"
        if _NAMED.sub(r"\1.<name>", path) == "routes.<name>":
            route = path.split(".")[1]
            return f"{key!r} looks like a route inside route {route!r}: indent it less, directly under `routes:`"
    if difflib.get_close_matches(key, known, n=1, cutoff=0.6):
        return unknown(key, known, "key")
    here = _NAMED.sub(r"\1.<name>", path)
    base = key.removesuffix("_file") if key.endswith("_file") else None
    exact = [
        (pattern, name)
        for pattern, name, secret in _schema()
        if pattern != here and (name == key or (base is not None and name == base and secret))
    ]
    if exact:
        targets = [_concrete(pattern, path) + "." + key for pattern, _ in _nearest(here, exact)]
        section = targets[0].rsplit(".", 2)[-2] if "." in targets[0] else ""
        move = f" (indent it under `{section}:`)" if targets[0].startswith(f"{path}.") and section else ""
        return f"unknown key {key!r} here; it belongs at {' or '.join(targets)}{move}"
    near = [(p, n) for p, n, _ in _schema() if _distance(here, p) <= 2 and p != here]
    close = difflib.get_close_matches(key, [n for _, n in near], n=1, cutoff=0.75)
    if close:
        pattern = _nearest(here, [(p, n) for p, n in near if n == close[0]])[0][0]
        target = f"{_concrete(pattern, path)}.{close[0]}"
        return f"unknown key {key!r}; did you mean {target}? (keys here: {', '.join(sorted(known))})"
    return unknown(key, known, "key")


def braces_hint(value: Any) -> str:
    """For `client_id: {K}` (YAML reads `{K}` as a mapping): the quoting to write instead, else ""."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value.values())) is None:
        name = next(iter(value))
        return f'; in YAML {{{name}}} is a mapping: write "${{{name}}}" (with the $, in quotes)'
    return ""


def yaml_hint(text: str, line: int) -> str:
    """For a YAML error on a line like `headers: {x-api-key: ${K}}`: how to quote it, else ""."""
    lines = text.splitlines()
    if 0 <= line < len(lines) and _FLOW_WITH_VAR.search(lines[line]):
        return (
            "; inside { } YAML reads the braces of ${VAR} as a mapping: quote the value, "
            'e.g. headers: {x-api-key: "${API_KEY}"}, or write one key per line'
        )
    return ""


def _distance(a: str, b: str) -> int:
    left, right = a.split(".") if a else [], b.split(".") if b else []
    common = 0
    for x, y in zip(left, right, strict=False):
        if x != y:
            break
        common += 1
    return len(left) + len(right) - 2 * common


def _nearest(here: str, found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    best = min(_distance(here, pattern) for pattern, _ in found)
    return [item for item in found if _distance(here, item[0]) == best][:3]


def _concrete(pattern: str, path: str) -> str:
    """`routes.<name>.auth` with the route name of `path` when it has one (else NAME)."""
    match = _NAMED.match(path)
    if match and pattern.startswith(match.group(1) + ".<name>"):
        return match.group(0) + pattern[len(match.group(1) + ".<name>") :]
    return pattern.replace("<name>", "NAME")
