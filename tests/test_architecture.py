"""The package's structure, as issue 17 settled it, checked on the source (ast):

* no module reaches into another module's private names (``from m import _x`` or
  ``m._x``): modules talk through public names (the private ``_validation`` module holds
  public validation helpers for the others);
* one checkpointed runner: only :mod:`overparam_jax.runner` (and the checkpoint module
  itself) saves and loads checkpoint files — every long loop goes through ``run_chunks``;
* one progress type: :class:`overparam_jax.runner.Progress`.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "overparam_jax"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_aliases(tree: ast.Module) -> set[str]:
    """Names bound to overparam_jax modules by ``import overparam_jax.x as y`` or
    ``from overparam_jax import x`` where x is a module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("overparam_jax")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("overparam_jax"):
            base = PACKAGE.parent / node.module.replace(".", "/")
            names |= {a.asname or a.name for a in node.names
                      if (base / f"{a.name}.py").exists() or (base / a.name / "__init__.py").exists()}
    return names


def _private_uses(path: Path) -> list[str]:
    tree = _tree(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("overparam_jax"):
            found += [f"{path.name}:{node.lineno} imports {node.module}.{a.name}"
                      for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    aliases = _module_aliases(tree)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for path in MODULES for use in _private_uses(path)]
    assert not found, found


def _calls(path: Path, names: set[str]) -> list[str]:
    return [f"{path.relative_to(PACKAGE)}:{node.lineno}" for node in ast.walk(_tree(path))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in names]


def test_only_the_runner_saves_and_loads_checkpoints():
    owners = {PACKAGE / "runner.py", PACKAGE / "checkpoint.py"}
    found = [c for path in MODULES if path not in owners
             for c in _calls(path, {"save_checkpoint", "load_checkpoint"})]
    assert not found, f"chunk/resume loops outside overparam_jax.runner: {found}"


def test_one_progress_type():
    classes = [f"{path.relative_to(PACKAGE)}:{node.name}" for path in MODULES for node in ast.walk(_tree(path))
               if isinstance(node, ast.ClassDef) and node.name.endswith("Progress")]
    assert classes == ["runner.py:Progress"], classes
