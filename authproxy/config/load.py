"""Load and validate the YAML config into the frozen dataclasses of `config.schema`.

Every problem is collected with its key path and a hint, and all are reported at once
(`ConfigError`), so a user fixes a config in one pass rather than one error per run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from authproxy.config.checks import ConfigChecks, Problems, join, unknown
from authproxy.config.expand import Expander, unexpanded_warning
from authproxy.config.hints import braces_hint, unknown_key, yaml_hint
from authproxy.config.presets import Preset, load_preset, preset_names
from authproxy.config.presets.params import fill
from authproxy.config.schema import Config, RouteConfig
from authproxy.config.service_account import read_auth_files
from authproxy.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}
FILE_SUFFIX = "_file"


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, expand, merge presets and validate `path`; raise ConfigError listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", missing_config_advice(Path(path)))], source) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read the config file: {exc.strerror or exc}")], source) from None
    except UnicodeDecodeError:
        raise ConfigError([("", "the config file is not UTF-8 text; save it as UTF-8")], source) from None
    return parse_config(
        text, source=source, env=os.environ if env is None else env, base_dir=Path(path).resolve().parent
    )


def missing_config_advice(path: Path) -> str:
    """What to do when the config file is not there (a fresh clone has only the example)."""
    absolute = path.expanduser().absolute()
    example = absolute.parent / "config.example.yaml"
    start = f"cp {example.name} {path}" if example.is_file() else "copy config.example.yaml from the repository"
    return f"no config file at {absolute}; {start} to start from the example, or give another file with -c FILE"


def parse_config(
    text: str, *, source: str = "config", env: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    problems = Problems()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        hint = yaml_hint(text, mark.line) if mark else ""
        raise ConfigError(
            [("", f"invalid YAML: {where}{getattr(exc, 'problem', None) or exc}{hint}")], source
        ) from None
    except RecursionError:
        raise ConfigError([("", "the document nests too deeply; simplify it")], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([("", "the top level must be a mapping of keys (listen, routes, ...)")], source)
    ctx = _Context(problems, os.environ if env is None else env, base_dir or Path.cwd())
    try:
        raw = ctx.expander.expand(raw, "")
    except RecursionError:
        raise ConfigError(
            [("", "the document nests too deeply (or an alias refers to itself); simplify it")], source
        ) from None
    config = ctx.parse_top(raw)
    if problems.items:
        raise ConfigError(problems.items, source)
    sources = {path: tuple(names) for path, names in ctx.expander.sources.items()}
    return dataclasses.replace(config, env_sources=sources, load_warnings=tuple(ctx.warnings))


class _Context(ConfigChecks):
    def __init__(self, problems: Problems, env: Mapping[str, str], base_dir: Path) -> None:
        self.problems = problems
        self.base_dir = base_dir
        self.warnings: list[str] = []
        self.expander = Expander(env, problems, self.warnings)

    # -- _file indirection (${VAR} expansion: config.expand) ------------------------------------
    def read_secret_file(self, path: str, filename: Any) -> str | None:
        if not isinstance(filename, str) or not filename:
            self.problems.add(path, "expected the path of a file holding the value")
            return None
        try:
            file = Path(filename).expanduser()
            if not file.is_absolute():
                file = self.base_dir / file
            text = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            self.problems.add(path, f"cannot read {filename}: {exc.strerror or exc}; check the path and permissions")
        except UnicodeDecodeError:
            self.problems.add(path, f"{filename} is not UTF-8 text; a secret file holds the value as text")
        except (ValueError, RuntimeError) as exc:  # NUL in the name, ~unknown-user
            self.problems.add(path, f"cannot use {filename!r} as a file name ({exc})")
        else:
            if (warning := unexpanded_warning(path, text, f"the content of {filename}")) is not None:
                self.warnings.append(warning)
            return text
        return None

    # -- structure -----------------------------------------------------------------------------
    def parse_top(self, raw: dict[str, Any]) -> Config:
        routes_raw = raw.pop("routes", None)
        config = self.parse_dataclass(Config, raw, "")
        routes: dict[str, RouteConfig] = {}
        if routes_raw is None:
            self.problems.add(
                "routes", "no routes: add at least one, e.g. routes: {api: {upstream: https://api.example.com}}"
            )
        elif not isinstance(routes_raw, dict):
            self.problems.add("routes", "expected a mapping of route name to route settings")
        else:
            for name, body in routes_raw.items():
                route = self.parse_route(str(name), body)
                if route is not None:
                    routes[str(name)] = route
        self.check_prefixes(routes)
        self.check_listen(config)
        if config.limits.upstream_connections < 1:
            self.problems.add("limits.upstream_connections", "must be at least 1 (512 by default)")
        self.check_team(config, routes)
        self.check_pair(config.tls.cert_file, config.tls.key_file, "tls")
        self.check_store(config)
        return dataclasses.replace(config, routes=routes)

    def parse_route(self, name: str, body: Any) -> RouteConfig | None:
        path = f"routes.{name}"
        if body is None:
            body = {}
        if not isinstance(body, dict):
            self.problems.add(path, "expected a mapping with at least `upstream:`")
            return None
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            self.problems.add(
                path, "route names use letters, digits, '.', '_' and '-', starting with a letter or digit"
            )
        body, preset = self.apply_preset(dict(body), path)
        preset_name = body.get("preset")
        required_headers = preset.required_headers if preset is not None else []
        body.setdefault("prefix", f"/{name}")
        body["name"] = name
        if "env_vars" in body:
            self.problems.add(f"{path}.env_vars", "set by the loader from the ${VAR}s in the route; remove it")
        body["env_vars"] = {
            key.removeprefix(f"{path}."): " ".join(dict.fromkeys(names))
            for key, names in self.expander.sources.items()
            if key.startswith(f"{path}.")
        }
        route = self.parse_dataclass(RouteConfig, body, path)
        route = dataclasses.replace(
            route, auth=read_auth_files(route.auth, f"{path}.auth", self.problems, self.base_dir)
        )
        for header in required_headers:
            if header.lower() not in {h.lower() for h in route.headers}:
                var = f"{name}_{header}".upper().replace("-", "_").replace(".", "_")
                self.problems.add(
                    f"{path}.headers.{header}",
                    f"the {preset_name} preset needs this header; add `{header}: ${{{var}}}`",
                )
        for key, hint in (preset.required_keys if preset is not None else {}).items():
            section, _, attribute = key.rpartition(".")
            if getattr(getattr(route, section) if section else route, attribute, None) is None:
                self.problems.add(f"{path}.{key}", f"the {preset_name} preset needs it: {hint}")
        return self.check_route(route, path)

    def apply_preset(self, body: dict[str, Any], path: str) -> tuple[dict[str, Any], Preset | None]:
        """The route merged over its preset (`preset: NAME` or `preset: {name: NAME, param: value}`)."""
        given = body.get("preset")
        if given is None:
            return body, None
        params: dict[str, Any] = {}
        if isinstance(given, dict):
            params = {str(k): v for k, v in given.items()}
            given = params.pop("name", None)
            if not isinstance(given, str) or not given:
                self.problems.add(
                    f"{path}.preset", "name the preset: preset: {name: entra, tenant: ...} (see `authproxy presets`)"
                )
                return {k: v for k, v in body.items() if k != "preset"}, None
        body["preset"] = given = str(given)
        preset = load_preset(given)
        if preset is None:
            self.problems.add(f"{path}.preset", unknown(given, preset_names(), "preset"))
            return body, None
        defaults, problems = fill(preset.route, given, preset.params, params)
        for problem in problems:
            self.problems.add(f"{path}.preset", problem)
        return _merge(defaults, body), preset

    def parse_dataclass(self, cls: type, raw: Any, path: str) -> Any:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problems.add(path, f"expected a mapping, got {_kind(raw)}")
            return cls()
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            key = str(key)
            kpath = join(path, key)
            if key.endswith(FILE_SUFFIX) and key[: -len(FILE_SUFFIX)] in fields:
                base = key[: -len(FILE_SUFFIX)]
                if not fields[base].metadata.get("secret"):
                    self.problems.add(kpath, f"only secrets can be read from a file; set `{base}` directly")
                    continue
                if base in raw:
                    self.problems.add(kpath, f"give either `{base}` or `{key}`, not both")
                    continue
                value = self.read_secret_file(kpath, value)
                if value is None:
                    continue
                key, kpath = base, join(path, base)
            if key not in fields:
                self.problems.add(kpath, unknown_key(key, path, value, list(fields)))
                continue
            values[key] = self.coerce(hints[key], value, kpath, secret=fields[key].metadata.get("secret", False))
        for name, f in fields.items():
            if f.metadata.get("required") and name not in values:
                self.problems.add(join(path, name), f"required: {f.metadata.get('doc', '').rstrip('.')}")
        values = {k: v for k, v in values.items() if v is not _INVALID}
        return cls(**values)

    def coerce(self, tp: Any, value: Any, path: str, *, secret: bool = False) -> Any:
        """Check `value` against type `tp`; return the converted value or _INVALID."""
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            (inner,) = [a for a in args if a is not type(None)]
            return self.coerce(inner, value, path, secret=secret)
        if origin is Literal:
            if value not in args:
                self.problems.add(path, unknown(str(value), [str(a) for a in args], "value"))
                return _INVALID
            return value
        if dataclasses.is_dataclass(tp):
            return self.parse_dataclass(tp, value, path)
        if origin is dict and dataclasses.is_dataclass(args[1]):
            return self.coerce_named(args[1], value, path)
        if origin is dict:
            return self.coerce_str_map(value, path)
        if origin is tuple:
            items = [value] if isinstance(value, str) else value
            if isinstance(items, list) and all(isinstance(i, str) and i for i in items):
                return tuple(items)
            self.problems.add(path, f"expected a list of strings, got {_kind(value)}")
            return _INVALID
        if tp is bool:
            if isinstance(value, bool):
                return value
            self.problems.add(path, f"expected true or false, got {_kind(value)}")
        elif tp is int:
            size = _parse_size(value)
            if size is not None:
                return size
            self.problems.add(path, f"expected a whole number (sizes may say 1MiB), got {_kind(value)}")
        elif tp is float:
            if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e12:
                return float(value)
            self.problems.add(path, f"expected a number of seconds (>= 0, finite), got {_kind(value)}")
        elif tp is str:
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return str(value)
            self.problems.add(path, f"expected a string, got {_kind(value)}{braces_hint(value)}")
        else:  # pragma: no cover - a schema type this loader does not know
            raise TypeError(f"unsupported schema type {tp!r} at {path}")
        return _INVALID

    def coerce_named(self, cls: type, value: Any, path: str) -> dict[str, Any] | object:
        """A mapping of names to sections of type `cls` (e.g. `clients:`)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.add(path, f"expected a mapping of names to settings, got {_kind(value)}")
            return _INVALID
        return {str(name): self.parse_dataclass(cls, body, join(path, str(name))) for name, body in value.items()}

    def coerce_str_map(self, value: Any, path: str) -> dict[str, str] | object:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.add(path, f"expected a mapping of names to values, got {_kind(value)}")
            return _INVALID
        out: dict[str, str] = {}
        for key, item in value.items():
            key, kpath = str(key), join(path, str(key))
            if key.endswith(FILE_SUFFIX):
                text = self.read_secret_file(kpath, item)
                if text is not None:
                    out[key[: -len(FILE_SUFFIX)]] = text
                continue
            if isinstance(item, dict | list) or item is None:
                self.problems.add(kpath, f"expected a string value, got {_kind(item)}{braces_hint(item)}")
                continue
            out[key] = str(item).lower() if isinstance(item, bool) else str(item)
            if any(c in out[key] for c in "\r\n\0"):
                self.problems.add(kpath, "values must not contain line breaks or NUL")
        return out

    # -- cross-field checks ----------------------------------------------------------------------


_INVALID = object()


def _parse_size(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()]
    return None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings: the route's own keys win over the preset's."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else f"{value!r}"
