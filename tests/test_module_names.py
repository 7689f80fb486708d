"""No module or package name twice in the package (docs/CONTRIBUTING.md).

The one exception: ``commands/<name>.py`` may share its name with the module it drives
(``commands/export.py`` runs ``models/export.py``), and then it must import it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dmsps"


def _names() -> dict[str, list[Path]]:
    names: dict[str, list[Path]] = defaultdict(list)
    for path in SRC.rglob("*.py"):
        if path.name != "__init__.py":
            names[path.stem].append(path)
    for folder in SRC.rglob("*"):
        if folder.is_dir() and (folder / "__init__.py").is_file() and folder != SRC:
            names[folder.name].append(folder)
    return names


def _dotted(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_module_name_repeats_except_a_command_and_what_it_drives():
    problems = []
    for name, places in sorted(_names().items()):
        if len(places) < 2:
            continue
        commands = [p for p in places if p.parent == SRC / "commands"]
        others = [p for p in places if p not in commands]
        if len(commands) != 1 or len(others) != 1:
            problems.append(f"{name}: {[str(p.relative_to(SRC)) for p in places]}")
            continue
        driven = _dotted(others[0])
        if not any(i == driven or i.startswith(driven + ".") for i in _imports(commands[0])):
            problems.append(
                f"{name}: commands/{name}.py shares its name with {driven} but does not use it"
            )
    assert not problems, "module names repeat:\n" + "\n".join(problems)
