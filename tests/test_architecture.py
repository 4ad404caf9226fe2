"""The layering of the package runs one way (issue 13, item 2).

Bottom to top: the core (``errors``, ``output``, ``tensor_files``, ``scatter``, ``groups``,
``nn``, ``chem``, ``data``, ``diffusion``, ``training``, in that order: each may import only
those before it), then ``tasks`` (which receive a config and build data and models), then what
uses them (``conformers``, ``sets``, ``commands``, ``cli``). No module may import
from a layer above its own, not even inside a function: checked on the sources with ``ast``, and
by importing every module of each core package in a fresh interpreter. docs/architecture.md
draws the picture.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "quotient_diffusion"

#: the core, bottom first: a core package may import those before it, never one after it
CORE = ("errors", "output", "tensor_files", "scatter", "groups", "nn", "chem", "data",
        "diffusion", "training")
APPLICATIONS = ("conformers", "sets", "commands", "cli")
#: package -> the packages it must never import
FORBIDDEN = {
    **{top: (*CORE[k + 1:], "tasks", *APPLICATIONS) for k, top in enumerate(CORE)},
    "tasks": ("conformers", "sets", "commands", "cli"),
    "sets": ("tasks", "conformers", "commands", "cli"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, package: str) -> set[str]:
    """Every quotient_diffusion module that ``source`` (a module of ``package``) imports
    anywhere, at the top or inside a function; relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            if node.module is None:
                found.update(f"{module}.{alias.name}" for alias in node.names)
            else:
                found.add(module)
    return {m for m in found if m.split(".")[0] == "quotient_diffusion"}


def _imported(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _imports(path.read_text(), package)


def _top(module: str) -> str:
    """The first-level package (or module) of ``module`` under quotient_diffusion."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _sources(top: str) -> list[Path]:
    folder = PACKAGE / top
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{top}.py"]


@pytest.mark.parametrize("top", sorted(FORBIDDEN))
def test_no_module_imports_a_layer_above_its_own(top):
    offenders = [f"{path.relative_to(PACKAGE.parent)} imports {module}"
                 for path in _sources(top) for module in sorted(_imported(path))
                 if _top(module) in FORBIDDEN[top]]
    assert not offenders, offenders


def test_the_check_sees_function_level_and_relative_imports():
    """The check above catches a late import such as the one the training loop once had."""
    source = "def train():\n    from ..tasks import get_task\n    from . import ema\n"
    assert _imports(source, "quotient_diffusion.training") == {
        "quotient_diffusion.tasks", "quotient_diffusion.training.ema"}


def _module_names(top: str) -> list[str]:
    return sorted({_module_name(path) for path in _sources(top)})


@pytest.mark.parametrize("top", ["groups", "nn", "chem", "data", "diffusion", "training"])
def test_importing_a_core_package_loads_no_higher_layer(top):
    """Every module of ``top`` imported (lazy imports inside functions are the ast check's)."""
    code = (f"import importlib, sys\nfor name in {_module_names(top)!r}:\n"
            "    importlib.import_module(name)\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('quotient_diffusion.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = {_top(m) for m in proc.stdout.split()}
    assert not loaded & set(FORBIDDEN[top]), sorted(loaded)
