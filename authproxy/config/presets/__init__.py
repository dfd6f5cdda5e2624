"""Built-in provider presets, kept as data (one YAML file each).

A preset is a partial route: its keys are defaults that the route's own keys override. A preset
may declare parameters (`params:`) that fill `{name}` templates in its values (`params.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from authproxy.config.presets.params import PresetParam, parse_params


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    route: dict[str, Any]
    required_headers: list[str] = field(default_factory=list)
    sensitive_scopes: list[str] = field(default_factory=list)  # each belongs on a route of its own
    params: dict[str, PresetParam] = field(default_factory=dict)  # fill `{name}` in the route's values
    required_keys: dict[str, str] = field(default_factory=dict)  # `auth.scope` -> how to set it


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


@cache
def _load(name: str) -> Preset | None:
    if name not in preset_names():
        return None
    data = yaml.safe_load(resources.files(__package__).joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    return Preset(
        name=name,
        description=data.get("description", ""),
        route=data.get("route", {}),
        required_headers=list(data.get("required_headers", [])),
        sensitive_scopes=list(data.get("sensitive_scopes", [])),
        params=parse_params(data.get("params"), name),
        required_keys=dict(data.get("required_keys", {})),
    )


def load_preset(name: str) -> Preset | None:
    """The preset called `name`, or None. Returns a copy so callers may merge into it."""
    preset = _load(name)
    if preset is None:
        return None
    return Preset(
        preset.name,
        preset.description,
        _copy(preset.route),
        list(preset.required_headers),
        list(preset.sensitive_scopes),
        dict(preset.params),
        dict(preset.required_keys),
    )


def mixed_sensitive_scopes(preset: str | None, scope: str | None) -> tuple[list[str], list[str]]:
    """(sensitive, others) when a route of `preset` asks for a sensitive scope together with others.

    Both empty when it does not: a token that can withdraw funds should not ride along on every
    everyday request (the provider documents say so); the fix is a route of its own for it.
    """
    found = load_preset(preset) if preset else None
    asked = (scope or "").split()
    sensitive = [s for s in asked if found is not None and s in found.sensitive_scopes]
    others = [s for s in asked if s not in sensitive]
    return (sensitive, others) if sensitive and others else ([], [])


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
