"""Commands and URLs the CLI prints, written so they can be pasted into any shell as they are.

A base module (no imports from the rest of authproxy), so `login` and `cli` both use it: zsh
answers `no matches found` for an unquoted `?`, and advice that drops the user's `-c FILE`
points at a config they are not using.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

PROG = "authproxy"
DEFAULT_CONFIG = "config.yaml"


def shell_quote(url: str) -> str:
    """A URL in single quotes (always: `?`, `&` and `#` mean something to shells), `'` escaped."""
    return "'" + url.replace("'", "'\"'\"'") + "'"


@dataclass(frozen=True, slots=True)
class Invocation:
    """The options the user gave, repeated in every command the CLI suggests."""

    config: str | None = None  # -c FILE, when not the default
    listen: str | None = None  # --listen HOST:PORT, when given

    @classmethod
    def of(cls, args: object) -> Invocation:
        return cls(cls.of_path(getattr(args, "config", None)), getattr(args, "listen", None))

    @staticmethod
    def of_path(config: str | None) -> str | None:
        """The `-c FILE` worth repeating: None for the default `config.yaml`."""
        return config if config and config != DEFAULT_CONFIG else None

    def command(self, subcommand: str, *words: str, listen: bool = False) -> str:
        """`authproxy SUBCOMMAND [-c FILE] [--listen ADDR] WORDS...`, each word quoted when a shell needs it."""
        parts: list[str] = [PROG, subcommand]
        if self.config:
            parts += ["-c", self.config]
        if listen and self.listen:
            parts += ["--listen", self.listen]
        return " ".join(shlex.quote(p) for p in [*parts, *words])

    def words(self) -> Sequence[str]:
        return ["-c", self.config] if self.config else []
