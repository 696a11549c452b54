"""The import graph between exvad_ray's subpackages (and top-level modules) is the one documented in
docs/CONTRACTS.md, and has no cycle. Read from the source with ast (function-level imports count:
a lazy import is still a dependency). The face on top (`exvad_ray.cli`, every `<pkg>/cli.py`, the demo)
may import anything and nothing below imports it."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "exvad_ray"


def is_face(module: str) -> bool:
    parts = module.split(".")
    return module == "exvad_ray.cli" or module.startswith("exvad_ray.cli.") or module == "exvad_ray.__main__" or \
        parts[-1] == "cli"


def node_of(module: str) -> str:
    """exvad_ray.<x>[.…] -> x (a subpackage or top-level module); the package root itself -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports() -> dict[str, set[str]]:
    """{module: modules it imports from exvad_ray}."""
    out: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("exvad_ray"))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    node.module.startswith("exvad_ray"):
                if node.module == "exvad_ray":  # from exvad_ray import storage, __version__
                    found.update(f"exvad_ray.{a.name}" if (PKG / a.name).exists() or (PKG / f"{a.name}.py").exists()
                                 else "exvad_ray" for a in node.names)
                else:
                    found.add(node.module)
        out[module] = found
    return out


def documented() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    block = re.search(r"```text import-graph\n(.*?)```", text, re.S)
    assert block, "docs/CONTRACTS.md lacks the ```text import-graph block"
    graph: dict[str, set[str]] = {}
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, deps = line.partition(":")
            graph[name.strip()] = {d.strip() for d in deps.split(",") if d.strip()}
    return graph


def actual_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, deps in imports().items():
        if is_face(module) or module == "exvad_ray":
            continue
        src = node_of(module)
        graph[src]
        for dep in deps:
            dst = node_of(dep)
            if dst and dst != src and not is_face(dep):
                graph[src].add(dst)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_documented_graph_has_no_cycle():
    assert cycle(documented()) is None, f"cycle in docs/CONTRACTS.md: {' -> '.join(cycle(documented()))}"


def test_the_code_follows_the_documented_graph():
    doc, real = documented(), actual_graph()
    undocumented = {f"{src} -> {dst}" for src, dsts in real.items() for dst in dsts if dst not in doc.get(src, set())}
    assert not undocumented, f"imports not in docs/CONTRACTS.md's import graph: {sorted(undocumented)}"
    assert set(real) <= set(doc), f"nodes missing from the documented graph: {sorted(set(real) - set(doc))}"
    assert cycle(real) is None


def test_nothing_below_imports_the_face():
    offenders = sorted(f"{m} -> {d}" for m, deps in imports().items() for d in deps
                       if is_face(d) and not is_face(m))
    assert not offenders, offenders


def test_the_cycle_finder_finds_cycles():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
