"""One home for each shared piece: constants, helpers and hook ids are defined once.

These read pachhook's own source (with `ast`), because what they guard is the shape of the
code: a second copy of a constant drifts from the first without any test noticing.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import yaml

from pachhook.setup.hookscripts import HOOK_IDS, HOOK_NAMES

PACKAGE = Path(__file__).resolve().parent.parent / "pachhook"


def modules() -> Iterator[Tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        yield name, ast.parse(path.read_text(encoding="utf-8"), str(path))


def definitions(kind: type) -> Dict[str, List[str]]:
    """name -> modules defining it at any depth (functions, classes)."""
    found: Dict[str, List[str]] = {}
    for module, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, kind):
                found.setdefault(node.name, []).append(module)
    return found


def assigned_names() -> Dict[str, List[str]]:
    """Module-level names bound by assignment -> the modules assigning them."""
    found: Dict[str, List[str]] = {}
    for module, tree in modules():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        found.setdefault(leaf.id, []).append(module)
    return found


def test_job_states_and_step_names_have_one_home():
    assigned = assigned_names()
    for name in ("QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "SUPERSEDED", "PENDING", "STEP_NAMES"):
        assert assigned[name] == ["pachhook.queue.states"], name
    steps = [
        module
        for module, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Tuple)
        and [getattr(item, "value", None) for item in node.elts] == ["build", "push", "update"]
    ]
    assert steps == ["pachhook.queue.states"]


def test_hook_ids_have_one_home_and_match_the_hooks_file():
    literals = [
        module
        for module, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in ("pachhook-validate", "pachhook-queue", "pachhook-check-push")
    ]
    assert literals == []  # hookscripts derives them from the commands the hooks run
    offered = yaml.safe_load((PACKAGE.parent / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    by_id = {hook["id"]: hook for hook in offered}
    assert set(HOOK_IDS) == set(HOOK_NAMES)
    for hook_type, hook_id in HOOK_IDS.items():
        assert hook_type in by_id[hook_id]["stages"], hook_id
        assert by_id[hook_id]["entry"] == "pachhook " + hook_id[len("pachhook-") :]


def test_one_find_templates_one_glob_translator_one_problem_class():
    functions = definitions(ast.FunctionDef)
    classes = definitions(ast.ClassDef)
    assert functions["find_templates"] == ["pachhook.core.globs"]
    assert functions["glob_regex"] == ["pachhook.core.globs"]
    assert "template_matcher" not in functions and "_glob_regex" not in functions
    assert classes["Problem"] == ["pachhook.core.diagnostics"]


def test_no_private_name_is_imported_from_another_package():
    crossings = []
    for module, tree in modules():
        package = module.split(".")[1] if module.count(".") > 1 else ""
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pachhook."):
                source = node.module.split(".")[1]
                for alias in node.names:
                    if alias.name.startswith("_") and source != package:
                        crossings.append(f"{module} imports {alias.name} from {node.module}")
    assert crossings == []


# The hook paths (pre-commit: validate; post-commit: queue; pre-push: check-push) import
# what they need where they need it, to stay fast; every other module imports at its top.
HOOK_PATH_MODULES = {
    "pachhook.cli",
    "pachhook.commands._common",  # check-push imports it
    "pachhook.commands.validate",
    "pachhook.commands.queue",
    "pachhook.commands.check_push",
}
OFF_HOOK_PACKAGES = ("pachhook.commands.", "pachhook.setup.", "pachhook.provenance.")


def test_modules_off_the_hook_paths_import_at_their_top():
    late = []
    for module, tree in modules():
        if module in HOOK_PATH_MODULES or not module.startswith(OFF_HOOK_PACKAGES):
            continue
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            tried = {id(node) for block in ast.walk(function) if isinstance(block, ast.Try) for node in block.body}
            for node in ast.walk(function):
                # An import tried inside a function is an optional dependency (pachhook[api]).
                if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in tried:
                    late.append(f"{module}:{node.lineno}")
    assert late == []
