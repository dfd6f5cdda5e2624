"""Preset parameters: the few values (a tenant, a domain, a realm) that fill a preset's URL templates.

A preset declares them under `params:` in its YAML; a route gives them in the mapping form
`preset: {name: entra, tenant: contoso.onmicrosoft.com}`. Each value is checked against its
kind before it is put into a URL, so `tenant: evil.example/x?` cannot reshape the token URL.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

KINDS: dict[str, tuple[re.Pattern[str], str]] = {
    # kind: (what a value must match, how the error describes it)
    "host": (
        re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?"),
        "a host name without scheme or path",
    ),
    "name": (re.compile(r"[A-Za-z0-9._~-]+"), "a name of letters, digits, '.', '_', '~' and '-'"),
    "url": (re.compile(r"https?://[^\s?#]+"), "an http(s) URL without query or fragment"),
    "text": (re.compile(r"[^\r\n\0]+"), "one line of text"),
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True, slots=True)
class PresetParam:
    """One declared parameter: what it is for, its kind, an example and an optional default."""

    name: str
    doc: str
    kind: str = "text"
    example: str | None = None
    default: str | None = None

    def usage(self) -> str:
        """One line for `authproxy presets NAME` and for error messages."""
        state = f"default {self.default}" if self.default is not None else "required"
        example = f", e.g. {self.example}" if self.example else ""
        return f"{self.name} ({state}): {self.doc}{example}"


def parse_params(raw: Any, preset: str) -> dict[str, PresetParam]:
    """The `params:` section of a preset's YAML (a packaging mistake fails loudly, in tests)."""
    params: dict[str, PresetParam] = {}
    for name, spec in (raw or {}).items():
        kind = spec.get("kind", "text")
        if kind not in KINDS or not _PLACEHOLDER.fullmatch("{" + name + "}"):
            raise ValueError(f"preset {preset}: parameter {name!r} has an unknown kind {kind!r} or a bad name")
        default = spec.get("default")
        params[name] = PresetParam(
            name, spec.get("doc", ""), kind, spec.get("example"), None if default is None else str(default)
        )
    return params


def fill(route: Any, preset: str, params: dict[str, PresetParam], given: dict[str, Any]) -> tuple[Any, list[str]]:
    """The preset's route with every `{param}` replaced; and a message per missing, unknown or bad value."""
    listed = (
        ", ".join(f"{p.name} ({'required' if p.default is None else 'default ' + p.default})" for p in params.values())
        or "none"
    )
    listed += f"; `authproxy presets {preset}` describes them"
    problems: list[str] = []
    values: dict[str, str] = {}
    for key in given:
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"the {preset} preset has no parameter {key!r}; {hint}its parameters: {listed}")
    for name, param in params.items():
        value = given.get(name, param.default)
        if value is None:
            example = param.example or "..."
            problems.append(
                f"the {preset} preset needs the parameter {name!r}; write preset: {{name: {preset}, {name}: "
                f"{example}}} (its parameters: {listed})"
            )
            continue
        if isinstance(value, bool | dict | list):
            problems.append(f"the {preset} preset's parameter {name!r} must be {KINDS[param.kind][1]}")
            continue
        text = str(value).strip().rstrip("/")  # a trailing slash would double the one the template has
        pattern, described = KINDS[param.kind]
        if not pattern.fullmatch(text):
            example = f", e.g. {param.example}" if param.example else ""
            problems.append(f"the {preset} preset's parameter {name!r} must be {described}{example}; got {text!r}")
            continue
        values[name] = text
    if problems:
        return route, problems
    return _substitute(route, values), []


def _substitute(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    return value
