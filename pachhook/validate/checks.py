"""Validate pipeline spec templates: load, render with sample values, check, place in the file.

The checks themselves live in `pachhook.spec.schema` (what a JSON schema can say) and
`pachhook.spec.rules` (what it cannot); this module runs them on every spec of every file and
turns their JSON-path problems into file:line:column diagnostics.
"""

from __future__ import annotations

import os

from pachhook.core.diagnostics import ERROR, Diagnostic, Problem
from pachhook.core.globs import GlobSet, find_templates
from pachhook.spec import jsonnet, rules, schema, versions
from pachhook.spec.loader import MAX_FILE_BYTES, LoadedFile, load_bytes, load_path
from pachhook.spec.template import image_template_problems, image_to_build, render, sample_values

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from pathlib import Path
    from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union


def validate_bytes(
    name: str,
    data: bytes,
    strict: bool = False,
    jsonnet_args: Optional[Mapping[str, str]] = None,
    tag_form: str = "full",
    version: Optional[versions.Version] = None,
) -> List[Diagnostic]:
    """All problems of one spec file's content; `name` is the file name shown.

    A Jsonnet template (by its name) is rendered first, with sample commit values and the
    configured `jsonnet_args`.
    """
    if jsonnet.is_jsonnet(name):
        loaded = jsonnet.load(name, data, jsonnet.arguments(sample_values(), jsonnet_args))
        return _check(name, loaded, strict, rendered=True, tag_form=tag_form, version=version)
    return _check(name, load_bytes(name, data), strict, tag_form=tag_form, version=version)


def validate_paths(
    paths: Iterable[Union[str, Path]],
    strict: bool = False,
    jsonnet_args: Optional[Mapping[str, str]] = None,
    tag_form: str = "full",
    version: Optional[versions.Version] = None,
) -> List[Diagnostic]:
    """All problems of the given files, file by file, each file's in line order.

    `version` is the Pachyderm version targeted (the configuration's pachyderm_version):
    fields newer than it are errors. None: the newest pachhook knows.
    """
    diagnostics: List[Diagnostic] = []
    for path in paths:
        if jsonnet.is_jsonnet(str(path)):
            try:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_FILE_BYTES + 1)  # more is refused unread
            except OSError as error:
                message = f"cannot read file: {error.strerror or error}"
                diagnostics.append(Diagnostic(str(path), 1, 1, message, ERROR, "", "unreadable"))
                continue
            diagnostics += validate_bytes(str(path), data, strict, jsonnet_args, tag_form, version)
            continue
        diagnostics += _check(str(path), load_path(path), strict, tag_form=tag_form, version=version)
    return diagnostics


def check_document(
    value: Any,
    strict: bool = False,
    rendered: bool = False,
    tag_form: str = "full",
    version: Optional[versions.Version] = None,
) -> List[Problem]:
    """Problems of one parsed spec; `tag_form` is the configuration's `tag`, the tag delivery pushes.

    A template's placeholders are filled with samples first; `rendered` says the value is
    already what a Jsonnet template rendered to (with the sample values): nothing to fill,
    and the image pachhook builds is the one tagged with the sample tag.
    """
    if rendered:
        found = schema.check(value) + rules.check(value, strict=strict) + versions.check(value, version)
        if jsonnet.built_image(value, sample_values()["tag"]) is not None:
            found = [Problem(p.path, p.message, ERROR, p.rule) if p.rule == "image-reference" else p for p in found]
        return found
    rendered_value, problems = render(value, sample_values())
    found = schema.check(rendered_value) + rules.check(rendered_value, strict=strict)
    found += versions.check(rendered_value, version)
    undeliverable = image_template_problems(value, tag_form)
    if undeliverable:
        # the image's own error says why; "not a valid image reference" would repeat it
        found = [p for p in found if not (p.rule == "image-reference" and p.path == undeliverable[0].path)]
        problems = problems + undeliverable
    if image_to_build(value) is not None:
        # pachhook builds and pushes this image under the rendered name, so a name the
        # registry cannot take is an error here, not the warning it is for other images.
        found = [Problem(p.path, p.message, ERROR, p.rule) if p.rule == "image-reference" else p for p in found]
    if problems:
        # a value still holding an unknown placeholder fails other checks for that reason
        # only: the placeholder problem is the one worth reading
        unrendered = {problem.path for problem in problems}
        found = [problem for problem in found if problem.path not in unrendered]
    return problems + found


def _check(
    name: str,
    loaded: LoadedFile,
    strict: bool,
    rendered: bool = False,
    tag_form: str = "full",
    version: Optional[versions.Version] = None,
) -> List[Diagnostic]:
    diagnostics = list(loaded.diagnostics)
    several = len(loaded.documents) > 1
    for document in loaded.documents:
        seen = set()
        for problem in check_document(document.value, strict, rendered, tag_form, version):
            key = (problem.path, problem.message, problem.severity)
            if key in seen:
                continue
            seen.add(key)
            diagnostics.append(document.diagnostic(name, problem, several))
    diagnostics.sort(key=lambda item: (item.line, item.column))
    return diagnostics


def working_tree_templates(root: Path, config: Any, skipped: Optional[List[str]] = None) -> List[Path]:
    """Files under `root` matching the configuration's template globs, folder by folder.

    Tracked and untracked files alike (a new template is checked before its first
    commit); the `.git` folder is never searched. A file matched only by the naming
    conventions that holds no pipeline spec is left out (its path added to `skipped`).
    """
    from pathlib import Path  # here: the hooks name their files and never walk the tree

    root = Path(root)
    found: List[Path] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name != ".git")
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for path in find_templates([prefix + name for name in sorted(files)], config.templates):
            if is_foreign(root / path, path, config.templates):
                if skipped is not None:
                    skipped.append(path)
                continue
            found.append(root / path)
    return found


def is_foreign(path: Union[str, Path], relative: str, template_globs: Sequence[str]) -> bool:
    """Whether `path` (at `relative` in the repository) is named like a template but holds no pipeline spec.

    Files the configuration names by a glob of its own are templates whatever they hold.
    """
    from pachhook.spec.sniff import by_convention_only, has_conventional_name, looks_like_template

    if not has_conventional_name(relative):
        return False
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return False  # unreadable: validating it says so
    if looks_like_template(relative, data):
        return False
    return by_convention_only(relative, template_globs, lambda globs, p: GlobSet(globs).matches(p))


NOT_A_TEMPLATE = (
    "named like a pipeline template but holds no pipeline spec"
    " (no pipeline.name with transform, spout or service): skipped"
)


def has_errors(diagnostics: Sequence[Diagnostic]) -> bool:
    return any(item.severity == "error" for item in diagnostics)
