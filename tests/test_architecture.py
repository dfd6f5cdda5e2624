"""The package's shape: no import cycles (function-level imports count too), small modules, layers kept.

Imports are read from the source with `ast`, so an import hidden inside a function to dodge a cycle
at run time is still an edge here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "authproxy"
MAX_LINES = 400

# Which top-level parts may import which (a part may always import itself and the base modules).
BASE = {"errors", "clock", "shell", "__init__", "__main__"}
ALLOWED = {
    "config": set(),
    "observability": {"config", "credentials.state"},
    "upstream": {"config"},
    "stores": {"config", "credentials.tokens", "observability"},
    "credentials": {"config", "stores", "upstream", "observability"},
    "proxy": {"config", "credentials", "upstream", "observability"},
    "login": {"config", "credentials", "stores", "upstream", "observability", "proxy", "server.runtime"},
    "console": {
        "config",
        "credentials",
        "stores",
        "upstream",
        "observability",
        "proxy",
        "login",
        "server.runtime",
        "server.status",
    },
    "server": {"config", "credentials", "stores", "upstream", "observability", "proxy", "login", "console"},
    "cli": {"config", "credentials", "stores", "upstream", "observability", "proxy", "login", "server", "console"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its source."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (stem, node.module or "") if part)
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_modules_stay_small() -> None:
    big = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}, f"modules over {MAX_LINES} lines: split them by concern"


def _part(module: str) -> str:
    parts = module.split(".")[1:]
    return parts[0] if parts else "__init__"


def test_parts_import_only_the_layers_below() -> None:
    wrong = []
    for module, targets in graph().items():
        part = _part(module)
        if part in BASE or part not in ALLOWED:
            continue
        for target in targets:
            other = _part(target)
            if other in BASE or other == part:
                continue
            allowed = ALLOWED[part]
            dotted = target.removeprefix("authproxy.")
            if other not in allowed and not any(dotted == a or dotted.startswith(a + ".") for a in allowed):
                wrong.append(f"{module} imports {target}")
    assert wrong == [], "layering:\n" + "\n".join(sorted(wrong))


def test_every_part_is_in_the_layer_table() -> None:
    parts = {_part(m) for m in modules()}
    assert parts - BASE <= set(ALLOWED), f"add new parts to ALLOWED: {sorted(parts - BASE - set(ALLOWED))}"
