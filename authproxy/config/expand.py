"""`$VAR` expansion as Docker Compose does it, so a value written for Compose means the same here.

`${VAR}`, `$VAR`, `${VAR:-default}` / `${VAR-default}`, `${VAR:?message}` / `${VAR?message}`,
`${VAR:+other}` / `${VAR+other}`, and `$$` for a literal `$`. Every `$` must be one of these: a
stray one is an error naming the key (rather than a value sent with a `$` the user did not mean),
and so is an unterminated `${`. Which variables fed which key is kept (`sources`), so later hints
can say "set STOCKX_CLIENT_ID" rather than only "routes.stockx.auth.client_id is empty".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from authproxy.config.checks import Problems, join

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)
# `${NAME...}` anywhere, or a whole value that is `$NAME`: a real secret holding `$x` is not warned about.
_LOOKS_UNEXPANDED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:?+-][^}]*)?\}|^\$[A-Za-z_][A-Za-z0-9_]*$")
LITERAL_HINT = "a literal $ is written $$"


class Expander:
    """Expands every string of a YAML tree; problems and warnings go to the loader's lists."""

    def __init__(self, env: Mapping[str, str], problems: Problems, warnings: list[str]) -> None:
        self.env = env
        self.problems = problems
        self.warnings = warnings
        self.sources: dict[str, list[str]] = {}

    def expand(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: self.expand(v, join(path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            return self.text(value, path)
        return value

    def text(self, value: str, path: str) -> str:
        """One string: references replaced; a problem recorded (and "" left) for each bad one."""
        out: list[str] = []
        i = 0
        while i < len(value):
            start = value.find("$", i)
            if start < 0:
                out.append(value[i:])
                break
            out.append(value[i:start])
            following = value[start + 1 : start + 2]
            if following == "$":
                out.append("$")
                i = start + 2
            elif following == "{":
                end = _closing(value, start + 2)
                if end < 0:
                    shown = value[start:][:40]
                    self.problems.add(
                        path,
                        f"{shown!r} has no closing }}: write ${{NAME}} (quoted in YAML: '${{NAME}}'); {LITERAL_HINT}",
                    )
                    return ""
                out.append(self._braced(value[start + 2 : end], path))
                i = end + 1
            elif (name := _NAME.match(value, start + 1)) is not None:
                out.append(self._lookup(name.group(0), None, None, path))
                i = name.end()
            else:
                self.problems.add(path, f"a $ that starts no variable reference; {LITERAL_HINT}")
                return ""
        return "".join(out)

    def _braced(self, body: str, path: str) -> str:
        match = _BRACED.fullmatch(body)
        if match is None:
            self.problems.add(
                path,
                f"${{{body}}} is not a variable reference: names use letters, digits and _ and do not start "
                f"with a digit (e.g. ${{MY_CLIENT_ID}}); {LITERAL_HINT}",
            )
            return ""
        name, op, rest = match.groups()
        return self._lookup(name, op, rest, path)

    def _lookup(self, name: str, op: str | None, rest: str | None, path: str) -> str:
        used = self.sources.setdefault(path, [])
        if name not in used:
            used.append(name)
        value = self.env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return self.text(rest or "", path) if missing else self._checked(name, value, path)
        if op in ("+", ":+"):
            return "" if missing else self.text(rest or "", path)
        if op in ("?", ":?"):
            if missing:
                reason = self.text(rest or "", path) or "required"
                self.problems.add(path, f"environment variable {name}: {reason} (export {name})")
                return ""
            return self._checked(name, value, path)
        if value is None:
            self.problems.add(
                path,
                f"environment variable {name} is not set; export it, or write ${{{name}:-default}} to give "
                f"a default ({LITERAL_HINT})",
            )
            return ""
        return self._checked(name, value, path)

    def _checked(self, name: str, value: str | None, path: str) -> str:
        """The variable's value, warning when it itself looks like a reference (expansion is one pass)."""
        value = value or ""
        if (found := _LOOKS_UNEXPANDED.search(value)) is not None:
            self.warnings.append(
                f"{path}: the value of {name} looks like an unexpanded variable ({found.group(0)[:40]}); "
                f"variables are expanded once: set {name} to the value itself"
            )
        return value


def unexpanded_warning(path: str, value: str, origin: str) -> str | None:
    """A warning when a value read as-is (a `_file`) still looks like `${VAR}`, else None."""
    found = _LOOKS_UNEXPANDED.search(value)
    if found is None:
        return None
    return (
        f"{path}: {origin} looks like an unexpanded variable ({found.group(0)[:40]}); "
        "file contents are used as they are: put the value itself in the file"
    )


def _closing(value: str, start: int) -> int:
    """Index of the `}` closing the `${` before `start` (nested `${...}` in defaults count), or -1."""
    depth = 1
    i = start
    while i < len(value):
        if value.startswith("$$", i):
            i += 2
            continue
        if value.startswith("${", i):
            depth += 1
            i += 2
            continue
        if value[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
