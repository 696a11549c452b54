"""The package's layers, read from the source with ast (function-level and TYPE_CHECKING imports
count: a lazy import is still a dependency), held against the floors in docs/ARCHITECTURE.md.

- every room (a subpackage or top-level module of exvad_ray, and bench/ and jobs/) has a floor, and
  imports only rooms on lower floors;
- a command module (exvad_ray/cli/*) imports no other command module (the shared argument groups in
  cli/args.py are not a command);
- no circle between modules, inside a room or across rooms;
- at most six floors."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "exvad_ray"
SCRIPT_ROOMS = ("bench", "jobs")  # recipes and benchmarks above the face: their files are rooms' modules too
SHARED_FACE = {"exvad_ray.cli", "exvad_ray.cli.__main__", "exvad_ray.cli.args"}  # not commands


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def sources() -> dict[str, Path]:
    out = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
    for room in SCRIPT_ROOMS:
        out.update({module_name(p): p for p in sorted((ROOT / room).glob("*.py"))})
    return out


def resolve(name: str, known: set[str]) -> str | None:
    """The module an import names: itself if known, else its longest known prefix (a package)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports() -> dict[str, set[str]]:
    """{module: modules of exvad_ray it imports}; `from pkg import sub` names the submodule."""
    src = sources()
    known = set(src)
    out: dict[str, set[str]] = {}
    for module, path in src.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if name.startswith("exvad_ray"):
                    target = resolve(name, known)
                    if target and target != module:
                        found.add(target)
        out[module] = found
    return out


def room(module: str) -> str:
    """exvad_ray.<x>[...] -> x; bench.<file> -> bench; the package root -> ''."""
    parts = module.split(".")
    if parts[0] in SCRIPT_ROOMS:
        return parts[0]
    return parts[1] if len(parts) > 1 else ""


def documented_floors() -> dict[str, int]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = re.search(r"```text floors\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md lacks the ```text floors block"
    floors: dict[str, int] = {}
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            floor, _, rooms = line.partition(":")
            floors.update({r.strip(): int(floor) for r in rooms.split(",") if r.strip()})
    return floors


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


def test_every_room_has_a_floor():
    floors = documented_floors()
    rooms = {room(m) for m in imports()} - {""}
    assert not rooms - set(floors), f"rooms without a floor in docs/ARCHITECTURE.md: {sorted(rooms - set(floors))}"
    assert max(floors.values()) <= 6


def test_imports_go_down_the_floors():
    floors = documented_floors()
    against = sorted(f"{m} -> {d} (floor {floors.get(room(m))} -> {floors.get(room(d))})"
                     for m, deps in imports().items() for d in deps
                     if room(d) and room(d) != room(m) and floors.get(room(d), 99) >= floors.get(room(m), 0))
    assert not against, "imports against the floors of docs/ARCHITECTURE.md:\n" + "\n".join(against)


def test_no_command_imports_another_command():
    offenders = sorted(f"{m} -> {d}" for m, deps in imports().items() for d in deps
                       if m.startswith("exvad_ray.cli.") and m not in SHARED_FACE
                       and d.startswith("exvad_ray.cli") and d not in SHARED_FACE)
    assert not offenders, offenders


def test_no_circle_between_modules():
    graph = imports()
    assert cycle(graph) is None, f"import circle: {' -> '.join(cycle(graph))}"


def test_the_layer_checks_find_what_they_look_for():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    assert resolve("exvad_ray.index.read_table", {"exvad_ray.index", "exvad_ray.index.store"}) == "exvad_ray.index"
    assert room("exvad_ray.cli.train") == "cli" and room("bench.scale") == "bench" and room("exvad_ray.units") == "units"
