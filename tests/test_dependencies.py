"""Every third-party import in src/ is a runtime dependency in pyproject.toml, or belongs
to an extra and is guarded so that its absence is one line naming that extra.

A plain `pip install .` must run every command; CI also proves that with a second
virtual environment without extras (.ci/run). This test catches the cause earlier: an
import of a package that only the dev extra installs.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

from dmsps.errors import DmspsError, missing_extra

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dmsps"

#: Submodules of a runtime package that need another distribution to import.
NEEDS = {"torch.utils.tensorboard": "tensorboard"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _project() -> tuple[set[str], dict[str, set[str]]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in data["dependencies"]}
    extras = {
        extra: {_name(r) for r in reqs if not r.startswith("dmsps")}
        for extra, reqs in data["optional-dependencies"].items()
        if extra != "dev"
    }
    return runtime, extras


def _guard_extra(handler: ast.ExceptHandler) -> str | None:
    """The extra a ``except ImportError`` handler names through ``missing_extra("X", ...)``."""
    caught = handler.type
    names = {n.id for n in ast.walk(caught) if isinstance(n, ast.Name)} if caught else set()
    if not names & {"ImportError", "ModuleNotFoundError"}:
        return None
    for node in ast.walk(handler):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "missing_extra"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            return node.args[0].value
    return None


def _imports() -> list[tuple[Path, int, str, str | None]]:
    """(file, line, module, extra named by the guarding handler or None) per import."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        guards: dict[int, str | None] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                extras = [_guard_extra(h) for h in node.handlers]
                extra = next((e for e in extras if e), None)
                for inner in node.body:
                    for sub in ast.walk(inner):
                        guards[id(sub)] = extra
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.append((path, node.lineno, module, guards.get(id(node))))
    return found


def _distribution(module: str) -> str | None:
    """The distribution that provides ``module`` (None: the standard library or ours)."""
    for prefix, dist in NEEDS.items():
        if module == prefix or module.startswith(prefix + "."):
            return dist
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "dmsps":
        return None
    dists = md.packages_distributions().get(top)
    assert dists, f"no installed distribution provides '{top}'"
    return dists[0].lower().replace("_", "-")


def test_every_third_party_import_is_declared_or_guarded():
    runtime, extras = _project()
    problems = []
    for path, line, module, guard in _imports():
        dist = _distribution(module)
        if dist is None or dist in runtime:
            continue
        owners = [name for name, members in extras.items() if dist in members]
        where = f"{path.relative_to(ROOT)}:{line}: import {module} ({dist})"
        if not owners:
            problems.append(f"{where} is neither a dependency nor in an extra")
        elif guard not in owners:
            problems.append(
                f"{where} belongs to the extra {owners[0]!r} but is not inside "
                f'`try: ... except ImportError as exc: raise missing_extra("{owners[0]}", ...)`'
            )
    assert not problems, "\n".join(problems)


def test_the_check_sees_what_it_must():
    """The scan finds the guarded optional imports and the runtime ones."""
    seen = {(module, guard) for _, _, module, guard in _imports()}
    assert ("onnx", "onnx") in seen
    assert ("onnxruntime", "onnx") in seen
    assert ("torch.utils.tensorboard", "tensorboard") in seen
    assert any(module == "monai.inferers" for module, _ in seen)
    assert _distribution("monai.inferers") in _project()[0]


def test_a_missing_extra_is_one_line_naming_it():
    err = missing_extra("onnx", "ONNX export", ModuleNotFoundError("x", name="onnxscript"))
    assert isinstance(err, DmspsError)
    text = str(err)
    assert "\n" not in text
    assert "onnxscript is missing" in text and 'pip install "dmsps[onnx]"' in text


@pytest.mark.parametrize("extra", ["tensorboard", "onnx"])
def test_dev_installs_every_extra(extra):
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = " ".join(data["optional-dependencies"]["dev"])
    assert re.search(rf"dmsps\[[^\]]*\b{extra}\b", dev)
