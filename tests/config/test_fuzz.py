"""Config fuzzing (issue 6): no config file, however wrong, makes `authproxy check` crash.

Every document either loads or raises `ConfigError` whose problems each name a key path; the
real `python -m authproxy check -c FILE` exits 0 or 2, never with a traceback. The schema is
walked at run time, so keys added later are fuzzed too.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authproxy.clock import SystemClock
from authproxy.config.load import parse_config
from authproxy.config.masking import masked
from authproxy.config.schema import AuthConfig, Config, RouteConfig
from authproxy.credentials.build import build_source
from authproxy.errors import ConfigError
from authproxy.upstream.pool import NativeTransport

ENV = {"SET_VAR": "from-env", "EMPTY_VAR": ""}
NOWHERE = Path("/nonexistent-authproxy-fuzz-dir")  # `_file` keys resolve here: nothing exists
BASE_ROUTE = {"upstream": "http://127.0.0.1:9"}
LOADER_SET = {("routes", "api", "name")}  # set by the loader from the route's key, not by the user
CLI = [sys.executable, "-m", "authproxy", "check", "-c"]
PROBLEM_LINE = re.compile(r"^  - (?:[^:\s]+: )?\S")


# -- the schema, walked --------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """`X | None` → X (None is always valid for an optional field)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner
    return tp


def _named_section(tp: Any) -> type | None:
    """The dataclass of a `dict[str, Dataclass]` field (routes, clients), else None."""
    if typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
        return typing.get_args(tp)[1]
    return None


def leaves(cls: type, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every settable key path of the schema with its type (sections and their keys)."""
    out: list[tuple[tuple[str, ...], Any]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue  # filled by the loader (env_sources, load_warnings), not a key of the file
        tp, here = _unwrap(hints[f.name]), (*path, f.name)
        if here in LOADER_SET:
            continue
        out.append((here, tp))
        if dataclasses.is_dataclass(tp):
            out += leaves(tp, here)
        elif (section := _named_section(tp)) is not None:
            out += leaves(section, (*here, "api" if f.name == "routes" else "c1"))
    return out


SCHEMA = leaves(Config)
SECTIONS = [(path, tp) for path, tp in SCHEMA if dataclasses.is_dataclass(tp)]


def wrong_values(tp: Any) -> list[Any]:
    """Values of the wrong type (or out of range) for a field of type `tp`."""
    if typing.get_origin(tp) is Literal:
        return ["bogus-choice", [1]]
    if dataclasses.is_dataclass(tp):
        return ["text", 5, [1]]
    if _named_section(tp) is not None:
        return ["text", [1]]
    if typing.get_origin(tp) is dict:
        return ["text", 5, [1], {"k": [1]}, {"k": {"a": 1}}, {"k": None}]
    if typing.get_origin(tp) is tuple:
        return [5, {"a": 1}, [""], [["nested"]]]
    if tp is bool:
        return ["maybe", 3, [True]]
    if tp is int:
        return [-5, "ten", [1], {"a": 1}, 1.5, True]
    if tp is float:
        return [-1, "soon", [1], {"a": 1}, True, float("nan")]
    if tp is str:
        return [[1], {"a": 1}, True]
    raise AssertionError(f"a schema type this fuzzer does not know: {tp!r}")


def document_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A valid minimal config with `value` set at `path` (sections created on the way)."""
    doc: dict[str, Any] = {"routes": {"api": dict(BASE_ROUTE)}}
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return doc


def problem_paths(err: ConfigError) -> list[str]:
    return [path for path, _ in err.problems]


def assert_well_formed(err: ConfigError) -> None:
    assert err.problems
    for path, message in err.problems:
        assert isinstance(path, str) and isinstance(message, str) and message.strip()
        assert "Traceback" not in message


def check_in_process(text: str) -> Config | ConfigError:
    """What `authproxy check` does, in-process: load, build each source, render masked."""
    try:
        config = parse_config(text, env=ENV, base_dir=NOWHERE)
    except ConfigError as err:
        assert_well_formed(err)
        return err
    problems: list[tuple[str, str]] = []
    for route in config.routes.values():
        try:
            build_source(route, SystemClock(), NativeTransport())
        except ConfigError as err:
            problems += err.problems
    yaml.safe_dump(masked(config), sort_keys=False, default_flow_style=False)
    if problems:
        err = ConfigError(problems)
        assert_well_formed(err)
        return err
    return config


# -- wrong types at every key ------------------------------------------------------------------


def test_the_schema_walk_covers_every_section() -> None:
    paths = {".".join(p) for p, _ in SCHEMA}
    assert {"listen", "routes.api.upstream", "routes.api.auth.client_secret", "limits.max_body"} <= paths
    assert "routes.api.auth.response.access_token" in paths
    assert len(paths) > 60


@pytest.mark.parametrize(("path", "tp"), SCHEMA, ids=[".".join(p) for p, _ in SCHEMA])
def test_a_wrong_type_at_any_key_is_reported_at_that_key(path: tuple[str, ...], tp: Any) -> None:
    dotted = ".".join(path)
    for value in wrong_values(tp):
        doc = document_with(path, value)
        with pytest.raises(ConfigError) as caught:
            parse_config(yaml.safe_dump(doc), env=ENV, base_dir=NOWHERE)
        assert_well_formed(caught.value)
        named = problem_paths(caught.value)
        assert any(p == dotted or p.startswith(dotted + ".") for p in named), (value, named)


@pytest.mark.parametrize("path", [p for p, _ in SECTIONS], ids=[".".join(p) for p, _ in SECTIONS])
def test_an_unknown_key_in_any_section_is_reported_with_its_path(path: tuple[str, ...]) -> None:
    doc = document_with((*path, "no_such_key_xyz"), 1)
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(doc), env=ENV, base_dir=NOWHERE)
    assert ".".join((*path, "no_such_key_xyz")) in problem_paths(caught.value)


def test_every_wrong_key_at_once_is_reported_all_together() -> None:
    doc: dict[str, Any] = {"routes": {"api": dict(BASE_ROUTE)}}
    expected = []
    for path, tp in SCHEMA:
        if dataclasses.is_dataclass(tp) or _named_section(tp) is not None:
            continue  # leaves only: a wrong section would hide its keys
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = wrong_values(tp)[0]
        expected.append(".".join(path))
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(doc), env=ENV, base_dir=NOWHERE)
    named = problem_paths(caught.value)
    assert [p for p in expected if not any(n == p or n.startswith(p + ".") for n in named)] == []


@pytest.mark.parametrize(
    ("value", "variable"),
    [("${UNSET_FUZZ_VAR}", "UNSET_FUZZ_VAR"), ("a-${UNSET_FUZZ_VAR}-b", "UNSET_FUZZ_VAR"), ("${EMPTY_VAR}", None)],
)
def test_bad_env_references_name_the_variable_and_the_key(value: str, variable: str | None) -> None:
    doc = document_with(("routes", "api", "auth"), {"grant": "static", "token": value})
    text = yaml.safe_dump(doc)
    if variable is None:  # set but empty: not an error (the route starts "not configured")
        assert parse_config(text, env=ENV, base_dir=NOWHERE).routes["api"].auth.token == ""
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env=ENV, base_dir=NOWHERE)
    ((path, message),) = caught.value.problems
    assert path == "routes.api.auth.token" and variable in message


@pytest.mark.parametrize("value", ["${", "${}", "${1BAD}", "${A B}", "$UNSET_FUZZ_VAR", "$$", "$${X}", "${X:-}"])
def test_odd_dollar_spellings_never_crash(value: str) -> None:
    check_in_process(yaml.safe_dump(document_with(("routes", "api", "auth"), {"grant": "static", "token": value})))


# -- hypothesis: structured documents ------------------------------------------------------------

ODD_STRINGS = [
    "",
    " ",
    "${SET_VAR}",
    "${UNSET_FUZZ_VAR}",
    "${UNSET_FUZZ_VAR:-dflt}",
    "${EMPTY_VAR:-dflt}",
    "$$",
    "${",
    "http://",
    "https://[::1",
    "http://h:99999",
    "http://127.0.0.1:9/base?q=1#f",
    "/o/token/",
    "../../etc/passwd",
    "127.0.0.1:8080",
    "0.0.0.0:80",
    "[::1]:8080",
    ":8080",
    "1MiB",
    "10 GiB",
    "-1",
    "1e400",
    "nan",
    "a\r\nb",
    "a\tb",
    "x" * 200,
    "caf\u00e9",
    "\U0001f600",
    "\u202e",
    "null",
    "~",
    "yes",
]
KEY_NAMES = sorted(
    {p[-1] for p, _ in SCHEMA}
    | {p[-1] + "_file" for p, _ in SCHEMA}
    | {"routes", "api", "x-api-key", "unknown_key", "Upstream", "upstrem", "", "0", "-", "auth.grant"}
)

# Known crashes (CRASHERS below) are kept out of the open fuzz so it stays a regression net:
# no NUL, no `~user` paths, no names over 255 bytes, no integers too large for a float.
texts = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20).filter(
    lambda t: not re.match(r"~[^/]", t)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.sampled_from(ODD_STRINGS),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEY_NAMES), inner, max_size=3),
    max_leaves=8,
)


def valid_ish(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly well-typed values for `tp` (the loader's later checks get exercised too)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return st.none() | valid_ish(_unwrap(tp), depth)
    if typing.get_origin(tp) is Literal:
        return st.sampled_from(typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return section(tp, depth + 1)
    if (named := _named_section(tp)) is not None:
        return st.dictionaries(
            st.sampled_from(["api", "b", "c-1", "bad name", "-x"]), section(named, depth + 1), max_size=2
        )
    if typing.get_origin(tp) is dict:
        return st.dictionaries(st.sampled_from(["x-api-key", "X-Other", "bad header", "k_file"]), scalars, max_size=3)
    if typing.get_origin(tp) is tuple:
        return st.lists(st.sampled_from(ODD_STRINGS) | texts, max_size=3)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(min_value=-10, max_value=10**12) | st.sampled_from(["1MiB", "10 kb", "5 XB", "0"])
    if tp is float:
        return st.floats(min_value=-1, max_value=1e9) | st.sampled_from([0, 0.001, float("inf")])
    return st.sampled_from(ODD_STRINGS) | texts


def section(cls: type, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    optional = {
        f.name: (valid_ish(hints[f.name], depth) | anything) if depth < 4 else anything
        for f in dataclasses.fields(cls)
        if (f.name != "name" or cls is not RouteConfig) and not f.metadata.get("internal")
    }
    optional["unknown_key"] = anything
    return st.fixed_dictionaries({}, optional=optional)


documents = section(Config)

UPSTREAMS = ["http://127.0.0.1:9", "https://api.example.com/base", "http://[::1]:8080/x"]
TOKEN_URLS = ["/o/token/", "https://auth.example.com/oauth/token", "http://127.0.0.1:9/token"]
AUTH_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "token_url": st.sampled_from(TOKEN_URLS),
    "authorize_url": st.sampled_from(TOKEN_URLS),
    "client_id": st.sampled_from(["cid", "", "${SET_VAR}", "${EMPTY_VAR:-}"]),
    "client_secret": st.sampled_from(["secret", "", "${EMPTY_VAR}", "-----BEGIN"]),
    "private_key": st.sampled_from(["not a key", "", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"]),
    "assertion_alg": st.sampled_from(["RS256", "HS256", "ES256", "none", "bogus"]),
    "refresh_token": st.sampled_from(["rt", ""]),
    "token": st.sampled_from(["tok", ""]),
}


def plausible_auth() -> st.SearchStrategy[dict[str, Any]]:
    """Auth sections that mostly pass the loader, so building the grant's source is fuzzed too."""
    hints = typing.get_type_hints(AuthConfig)
    optional = {
        f.name: AUTH_VALUES[f.name] if f.name in AUTH_VALUES else valid_ish(hints[f.name], depth=4)
        for f in dataclasses.fields(AuthConfig)
        if f.name not in ("response", "grant")
    }
    return st.fixed_dictionaries({"grant": valid_ish(hints["grant"])}, optional=optional)


plausible_documents = st.fixed_dictionaries(
    {
        "routes": st.dictionaries(
            st.sampled_from(["api", "b", "c-1"]),
            st.fixed_dictionaries(
                {"upstream": st.sampled_from(UPSTREAMS)},
                optional={"auth": plausible_auth(), "headers": valid_ish(dict[str, str]), "preset": valid_ish(str)},
            ),
            min_size=1,
            max_size=2,
        )
    }
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(doc=documents)
def test_structured_documents_load_or_fail_with_key_paths(doc: dict[str, Any]) -> None:
    result = check_in_process(yaml.safe_dump(doc, allow_unicode=True))
    if isinstance(result, ConfigError) and "unknown_key" in doc:
        assert "unknown_key" in problem_paths(result)


@FUZZ
@given(doc=plausible_documents)
def test_plausible_documents_load_or_fail_with_key_paths(doc: dict[str, Any]) -> None:
    check_in_process(yaml.safe_dump(doc, allow_unicode=True))


YAML_PIECES = [*"abkrtu:-{}[],'\"&*!|>#%@`?~ \n\t$0129.", "routes:", "  api:", "upstream: ", "\n  ", "${X}"]
YAMLISH = st.lists(st.sampled_from(YAML_PIECES), max_size=60).map("".join)


@FUZZ
@given(text=YAMLISH)
def test_yaml_ish_text_loads_or_fails_cleanly(text: str) -> None:
    check_in_process(text)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text_loads_or_fails_cleanly(text: str) -> None:
    check_in_process(text.replace("\x00", ""))


# -- the real command line -----------------------------------------------------------------------


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **ENV}
    return subprocess.run([*CLI, str(path)], capture_output=True, text=True, timeout=60, env=env, cwd=path.parent)


def assert_clean_exit(proc: subprocess.CompletedProcess[str], source: str) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr[-2000:])
    if proc.returncode == 2:
        lines = proc.stderr.splitlines()
        head = re.fullmatch(rf"{re.escape(source)}: (\d+) problem\(s\):", lines[0])
        assert head is not None, lines[:2]
        count = int(head.group(1))
        problems = [line for line in lines[1:] if line.startswith("  - ")]
        assert len(problems) == count and all(PROBLEM_LINE.match(line) for line in problems), lines
    else:
        assert "# OK:" in proc.stdout


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_authproxy_check_never_shows_a_traceback(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert_clean_exit(run_check(path), str(path))


def test_authproxy_check_names_every_wrong_key(tmp_path: Path) -> None:
    doc = document_with(("routes", "api", "read_timeout"), "soon")
    doc["routes"]["api"]["auth"] = {"grant": "client_credentials", "token_url": [1], "client_id": "${UNSET_FUZZ_VAR}"}
    doc["limits"] = {"max_body": "lots"}
    doc["lsten"] = "127.0.0.1:1"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = run_check(path)
    assert_clean_exit(proc, str(path))
    assert proc.returncode == 2
    for key in ("routes.api.read_timeout", "routes.api.auth.token_url", "routes.api.auth.client_id", "limits.max_body"):
        assert f"  - {key}: " in proc.stderr
    assert "  - lsten: unknown key 'lsten'; did you mean 'listen'?" in proc.stderr
    assert "UNSET_FUZZ_VAR" in proc.stderr


# -- known crashes -------------------------------------------------------------------------------

BIG = "1" + "0" * 400  # an integer no float can hold
CRASHERS = {
    "huge_int_for_seconds": (
        f"routes:\n  api: {{upstream: 'http://127.0.0.1:9', read_timeout: {BIG}}}\n".encode(),
        "config.py _Context.coerce: float(value) raises OverflowError for an int too large for a float",
    ),
    "recursive_alias": (
        b"routes:\n  api: {upstream: 'http://127.0.0.1:9'}\nloop: &a [*a]\n",
        "config.py _Context.expand recurses into a self-referencing YAML alias: RecursionError",
    ),
    "deep_nesting": (
        b"routes:\n  api: {upstream: 'http://127.0.0.1:9'}\nx: " + b"[" * 3000 + b"]" * 3000 + b"\n",
        "config.py _Context.expand recurses once per nesting level: RecursionError on 3000-deep lists",
    ),
    "config_not_utf8": (
        b"routes:\n  api: {upstream: 'http://127.0.0.1:9', prefix: /caf\xe9}\n",
        "config.py load_config catches OSError only; read_text raises UnicodeDecodeError",
    ),
    "nul_in_file_path": (
        b"routes:\n  api:\n    upstream: 'http://127.0.0.1:9'\n    auth: {grant: static, token_file: \"a\\0b\"}\n",
        "config.py read_secret_file catches OSError only; a NUL in the path raises ValueError",
    ),
    "file_name_too_long": (
        b"tls: {cert_file: " + b"x" * 300 + b", key_file: k.pem}\nroutes:\n  api: {upstream: 'http://127.0.0.1:9'}\n",
        "config_checks.py check_pair: Path.is_file() raises OSError(ENAMETOOLONG) for a name over 255 bytes",
    ),
    "unknown_user_home_secret": (
        b"routes:\n  api:\n    upstream: 'http://127.0.0.1:9'\n"
        b"    auth: {grant: static, token_file: ~no-such-user-q/t}\n",
        "config.py read_secret_file: Path.expanduser() raises RuntimeError for ~unknown-user",
    ),
    "unknown_user_home_ca": (
        b"routes:\n  api:\n    upstream: 'http://127.0.0.1:9'\n    tls: {ca_file: ~no-such-user-q/ca.pem}\n",
        "config_checks.py check_route: Path.expanduser() raises RuntimeError for ~unknown-user",
    ),
    "secret_file_not_utf8": (
        b"routes:\n  api:\n    upstream: 'http://127.0.0.1:9'\n    auth: {grant: static, token_file: secret.bin}\n",
        "config.py read_secret_file catches OSError only; a binary secret file raises UnicodeDecodeError",
    ),
}


@pytest.mark.parametrize("name", list(CRASHERS))
def test_authproxy_check_survives_known_crashers(tmp_path: Path, name: str) -> None:
    text, _ = CRASHERS[name]
    (tmp_path / "secret.bin").write_bytes(b"\xff\xfe\x00binary")
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    proc = run_check(path)
    assert_clean_exit(proc, str(path))
    assert proc.returncode == 2
