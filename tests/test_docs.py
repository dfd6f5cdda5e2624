"""The docs cannot drift: the configuration reference is the schema's, and the README names what exists."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import authproxy
from authproxy.cli.main import _parser
from authproxy.config import doc as configdoc
from authproxy.errors import AuthProxyError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
REFERENCE = ROOT / "docs" / "configuration.md"
REGENERATE = "python -m authproxy.config.doc > docs/configuration.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|console|bash)\n(.*?)```", text, re.S)


def test_configuration_reference_matches_the_schema() -> None:
    assert REFERENCE.read_text() == configdoc.render(), f"the schema changed: run `{REGENERATE}`"


def test_reference_lists_every_schema_key() -> None:
    text = REFERENCE.read_text()
    for cls, path in configdoc.sections():
        for name, f in cls.__dataclass_fields__.items():
            if not (path.endswith(".<name>") and name == "name") and not f.metadata.get("internal"):
                key = f"{path}.{name}" if path else name
                assert f"`{key}`" in text, key


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    block = code_blocks(README.split("Run the tests", 1)[1])[0]
    (command,) = block.strip().splitlines()
    assert "python -m pytest" in command
    assert command in ci, "the README's test command must be the line .ci/run runs"


def test_first_setup_command_installs_and_runs_the_demo() -> None:
    first = code_blocks(README.split("## Set-up", 1)[1])[0].strip()
    assert "pip install" in first and first.endswith("authproxy demo")


def all_error_codes() -> set[str]:
    """Every stable error code a client can receive, from every module of the package."""
    for module in pkgutil.walk_packages(authproxy.__path__, "authproxy."):
        if not module.name.endswith("__main__"):  # importing it would run the CLI
            importlib.import_module(module.name)
    codes: set[str] = set()
    todo = [AuthProxyError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo += cls.__subclasses__()
    return codes - {"internal_error"}


def test_readme_error_table_has_every_code() -> None:
    table = README.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| \d{3} \| `([a-z_]+)`", table, re.M))
    assert all_error_codes() <= documented, all_error_codes() - documented
    assert documented <= all_error_codes(), documented - all_error_codes()


def test_readme_covers_every_command_and_admin_endpoint() -> None:
    commands = next(a for a in _parser()._actions if a.dest == "command").choices
    for name in commands:
        assert f"`authproxy {name}" in README, name
    for endpoint in ("/-/health", "/-/ready", "/-/status", "/-/metrics", "/-/reload", "/-/login/"):
        assert endpoint in README, endpoint


def test_readme_recipes_exist() -> None:
    for needle in (
        "docker compose",
        "kubernetes",
        "newman run",
        "requests",
        "httpx",
        "AUTHPROXY_URL_",
        "docs/configuration.md",
        "config.example.yaml",
    ):
        assert needle.lower() in README.lower(), needle
    for path in re.findall(r"\]\(((?:deploy|docs)/[^)#]+)\)", README):
        assert (ROOT / path).exists(), path
