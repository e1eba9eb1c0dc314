"""The package layout's rules, read from the source: imports point down the stages only, package
`__init__.py` files stay empty, and no module reaches for another package's private names.

The stages, lowest first (docs/architecture.md): a module may import its own package and the
packages below it, never one above.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pachhook"
LAYERS = ["core", "spec", "validate", "queue", "deliver", "provenance", "setup", "commands"]
# Top-level modules: the entry point sits above every layer; __init__ (the version) below all.
TOP = {"cli": len(LAYERS), "__main__": len(LAYERS) + 1, "clidoc": len(LAYERS) + 1, "__init__": -1}


def layer_of(module: str) -> int:
    parts = module.split(".")
    assert parts[0] == "pachhook", module
    if len(parts) == 1:
        return TOP["__init__"]
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP[parts[1]]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path):
    """(line, imported module, imported names) for each pachhook import, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pachhook"):
            names = [alias.name for alias in node.names]
            # `from pachhook.core import gitrepo` imports the module pachhook.core.gitrepo
            sub = [
                f"{node.module}.{name}"
                for name in names
                if (PACKAGE / Path(*node.module.split(".")[1:]) / name).exists()
                or (PACKAGE / Path(*node.module.split(".")[1:]) / f"{name}.py").exists()
            ]
            yield node.lineno, sub[0] if sub else node.module, names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pachhook"):
                    yield node.lineno, alias.name, []


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_stages(path: Path):
    here = module_name(path)
    upward = []
    for line, imported, _ in imports_of(path):
        if layer_of(imported) > layer_of(here):
            upward.append(f"{path.relative_to(PACKAGE)}:{line}: {here} imports {imported}, a later stage")
    assert upward == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_names_from_another_package(path: Path):
    here = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    private = [
        f"{path.relative_to(PACKAGE)}:{line}: {name} from {imported}"
        for line, imported, names in imports_of(path)
        for name in names
        if name.startswith("_")
        and not name.startswith("__")
        and not imported.startswith(here + ".")
        and imported != here
    ]
    assert private == []


def test_package_init_files_are_empty():
    # An __init__ with code would run on every hook call that imports anything below it.
    inits = [p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE]
    assert inits, "the stage packages are missing"
    assert [str(p.relative_to(PACKAGE)) for p in inits if p.read_text().strip()] == []


def test_no_module_shares_a_command_module_name():
    commands = {p.stem for p in (PACKAGE / "commands").glob("*.py") if not p.stem.startswith("_")}
    clashes = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.parent.name != "commands" and p.stem in commands
    )
    assert clashes == []
