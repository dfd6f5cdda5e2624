"""Generate the configuration reference from the schema: `python -m authproxy.config.doc > docs/configuration.md`.

The schema's dataclasses and their field metadata (`doc`, `secret`, `required`) are the one
source of truth; the docs are derived from them, and a test fails when the committed reference
and the schema disagree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from authproxy.config.presets import load_preset, preset_names
from authproxy.config.schema import Config

HEADER = """\
# Configuration reference

<!-- Generated from authproxy/config/schema.py by `python -m authproxy.config.doc > docs/configuration.md`.
     Do not edit by hand: change the schema's `doc` metadata and regenerate (tests/test_docs.py checks). -->

authproxy reads one YAML file (`authproxy run -c config.yaml`; `authproxy check -c config.yaml`
validates it and shows whether each route can work; `--show-config` prints the resolved config with
every secret masked). An annotated example with
all five providers is [`config.example.yaml`](../config.example.yaml).

- Environment variables are expanded in every value as Docker Compose does: `${VAR}`, `$VAR`,
  `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR:+other}`; a literal `$` is written
  `$$`. A variable that is not set and has no default, an unterminated `${` and a stray `$` are
  errors naming the key.
- A key marked **secret** may instead be given as `<key>_file: /path` to read the value from a file
  (Docker and Kubernetes secrets); for mappings marked secret (`headers`, `extra_params`, ...) each
  entry may be `<name>_file`. Relative paths are relative to the config file.
- A credential setting that is present but empty (typically `${VAR:-}` with `VAR` unset) does not
  stop authproxy: the route starts, answers 503 `not_configured` naming the keys, and is listed by
  `/-/ready` until it is set. A missing required key is an error.
- Unknown keys are errors with a "did you mean", or where the key belongs when it is a key of
  another section (`routes.NAME.auth.client_id`); every error names its key path, and all of them
  are reported at once (exit code 2).
- Durations and timeouts are seconds; sizes are bytes or strings such as `1MiB`.
"""


def type_name(tp: Any) -> str:
    """How a schema type reads in the docs."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in inner)
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is dict:
        value = args[1] if len(args) == 2 else str
        return "mapping of names to settings (below)" if dataclasses.is_dataclass(value) else "mapping of strings"
    if origin in (tuple, list):
        return f"list of {type_name(args[0])}s" if args else "list"
    if dataclasses.is_dataclass(tp):
        return "mapping (below)"
    return {str: "string", bool: "boolean", float: "number", int: "integer"}.get(tp, getattr(tp, "__name__", str(tp)))


def default_text(f: dataclasses.Field[Any]) -> str:
    if f.metadata.get("required"):
        return "**required**"
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:  # pragma: no cover - every schema field has a default
        return ""
    if dataclasses.is_dataclass(value):
        return ""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dict):
        return "`{}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _intro(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature, not a docstring
        return ""
    return doc


def nested(tp: Any) -> tuple[type, bool] | None:
    """(dataclass, keyed by name) when a field's type holds another section, else None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return nested(inner[0]) if len(inner) == 1 else None
    if origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1], True
    if dataclasses.is_dataclass(tp):
        return tp, False
    return None


def sections(cls: type = Config, path: str = "") -> list[tuple[type, str]]:
    """Every dataclass reachable from `cls` with the key path of its fields, parents first."""
    found = [(cls, path)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        inner = nested(hints[f.name])
        if inner is not None:
            child, keyed = inner
            key = f"{path}.{f.name}" if path else f.name
            found += sections(child, f"{key}.<name>" if keyed else key)
    return found


def section(cls: type, path: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = [f"## `{path}`" if path else "## Top level", ""]
    intro = _intro(cls)
    if intro:
        lines += [intro, ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if (path.endswith(".<name>") and f.name == "name") or f.metadata.get("internal"):
            continue  # set by the loader from the key it is filed under, not written by users
        key = f"{path}.{f.name}" if path else f.name
        doc = f.metadata.get("doc", "")
        if f.metadata.get("secret"):
            if typing.get_origin(hints[f.name]) is dict:
                doc += " **Secret**: masked in output; each entry may be given as `<name>_file`."
            else:
                doc += f" **Secret**: masked in output; may be given as `{f.name}_file`."
        lines.append(
            f"| `{key}` | {_cell(type_name(hints[f.name]))} | {_cell(default_text(f))} | {_cell(doc.strip())} |"
        )
    return [*lines, ""]


def presets_section() -> list[str]:
    lines = [
        "## Presets",
        "",
        "`preset: NAME` in a route fills these keys as defaults; the route's own keys win "
        "(`authproxy presets NAME` prints one).",
        "",
        "| preset | description | required headers | sensitive scopes (a route of their own) |",
        "|---|---|---|---|",
    ]
    for name in preset_names():
        preset = load_preset(name)
        assert preset is not None
        headers = ", ".join(f"`{h}`" for h in preset.required_headers) or "—"
        sensitive = ", ".join(f"`{s}`" for s in preset.sensitive_scopes) or "—"
        lines.append(f"| `{name}` | {_cell(preset.description)} | {headers} | {sensitive} |")
    return [*lines, ""]


def render() -> str:
    """The whole reference page, deterministic for a given schema and preset set."""
    lines = [HEADER]
    for cls, path in sections():
        lines += section(cls, path)
    lines += presets_section()
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
