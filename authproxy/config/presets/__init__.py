"""Built-in provider presets, kept as data (one YAML file each).

A preset is a partial route: its keys are defaults that the route's own keys override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    route: dict[str, Any]
    required_headers: list[str] = field(default_factory=list)


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
    )


def load_preset(name: str) -> Preset | None:
    """The preset called `name`, or None. Returns a copy so callers may merge into it."""
    preset = _load(name)
    if preset is None:
        return None
    return Preset(preset.name, preset.description, _copy(preset.route), list(preset.required_headers))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
