"""`pachhook init`'s work: find templates and Dockerfiles, set up pre-commit, install hooks.

Each action is planned first (an `Action` saying what and why) and then applied, so
that `--dry-run` prints the same plan without touching anything, and a second run finds
every action done and changes nothing.

The user's `.pre-commit-config.yaml` is extended by appending text, so comments and
layout stay as they were; the appended text is checked by parsing the result, and only
when appending cannot give the intended document is the file rewritten from its parsed
content (comments are then lost, and the action says so).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from pachhook.core import gitrepo
from pachhook.core.config import DEFAULT_TEMPLATE_GLOBS, ConfigError, load_config
from pachhook.core.environments import Environment, implicit_environment
from pachhook.core.globs import GlobSet, glob_regex
from pachhook.queue.affected import foreign_file, parse_template
from pachhook.setup.hookinstall import PRE_COMMIT, PRE_COMMIT_CONFIG, is_ours, record_installed
from pachhook.setup.hookscripts import HOOK_IDS
from pachhook.spec.loader import load_bytes

LOCAL_REPO = "local"
# Where pachhook will be published; until a release exists there, a set-up pointing at it
# cannot install (init 0.1 wrote it by default), so init replaces such an entry.
PUBLISHED_REPO = "https://github.com/pachhook/pachhook"
DEFAULT_FILES = r"(^|/)(pipeline|[^/]+\.pipeline)\.(json|ya?ml|jsonnet)$"
# The three hooks as .pre-commit-hooks.yaml publishes them (a test keeps both the same).
# `repo: local` needs every key spelled out; `language: system` runs the installed
# `pachhook`, so the set-up works offline and needs no hook repository at all.
HOOKS: Tuple[Dict[str, Any], ...] = (
    {
        "id": HOOK_IDS["pre-commit"],
        "name": "validate Pachyderm pipeline templates",
        "entry": "pachhook validate",
        "types_or": ["json", "yaml", "jsonnet"],
        "files": DEFAULT_FILES,
        "stages": ["pre-commit", "pre-push", "manual"],
        "verbose": True,  # warnings of a passing check are shown, not hidden by the framework
    },
    {
        "id": HOOK_IDS["post-commit"],
        "name": "queue pachhook delivery for the new commit",
        "entry": "pachhook queue",
        "stages": ["post-commit", "post-merge", "post-rewrite"],
        "always_run": True,
        "pass_filenames": False,
        "verbose": True,
    },
    {
        "id": HOOK_IDS["pre-push"],
        "name": "validate pipeline templates in every pushed commit",
        "entry": "pachhook check-push",
        "stages": ["pre-push"],
        "always_run": True,
        "pass_filenames": False,
        "verbose": True,  # it names deliveries that failed since the user last looked
    },
)
HOOK_TYPES = ("pre-commit", "pre-push", "post-commit", "post-merge", "post-rewrite")
PACHHOOK_CONFIG = ".pachhook.toml"
_MAX_SCAN_BYTES = 1 << 20  # larger JSON/YAML files are data, not pipeline specs
_DEFAULT_NAME = re.compile(r"(^|/)(pipeline|[^/]+\.pipeline)\.(json|ya?ml|jsonnet)$")


class InitError(Exception):
    """init cannot go on (not a repository, unreadable configuration); one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems[0] if problems else "init failed")
        self.problems = list(problems)


@dataclass
class Found:
    template: str  # path relative to the root
    pipelines: List[str]
    image: str  # repository pachhook builds for it ("" for a fixed image)
    dockerfile: str = ""  # the Dockerfile that builds it ("" when none was found)
    conventional: bool = True  # matched by the configuration's template globs


@dataclass
class Action:
    what: str  # "write", "extend", "rewrite", "install", "keep", "note"
    path: str
    message: str
    done: bool = False  # applied (False in a dry run, or when nothing was to do)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class InitResult:
    root: str
    templates: List[Found] = field(default_factory=list)
    actions: List[Action] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(action.done for action in self.actions)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "root": self.root,
            "changed": self.changed,
            "templates": [asdict(item) for item in self.templates],
            "actions": [action.to_dict() for action in self.actions],
        }


# -- discovery ------------------------------------------------------------------------


def repository_files(root: Path) -> List[str]:
    """Tracked and untracked, not ignored, files of the work tree (paths relative to root)."""
    out = gitrepo.git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root)
    return sorted({p.decode("utf-8", errors="surrogateescape") for p in out.split(b"\0") if p})


def looks_like_spec(value: Any) -> bool:
    """A pipeline spec has a pipeline name and a transform; other JSON/YAML files do not."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("pipeline"), dict)
        and isinstance(value["pipeline"].get("name"), str)
        and isinstance(value.get("transform"), dict)
    )


def discover_templates(root: Path, files: Sequence[str], config: Any) -> List[Found]:
    globs = GlobSet(config.templates)
    found: List[Found] = []
    for path in files:
        if not path.endswith((".json", ".yaml", ".yml", ".jsonnet")):
            continue
        full = root / path
        try:
            if full.stat().st_size > _MAX_SCAN_BYTES:
                continue
            data = full.read_bytes()
        except OSError:
            continue
        conventional = globs.matches(path)
        if not conventional and path.endswith(".jsonnet"):
            continue  # a Jsonnet library or other file: only named templates are rendered
        if not conventional:
            if b"pipeline" not in data or b"transform" not in data:
                continue  # cheap test first: most JSON/YAML files of a repository are no spec
            loaded = load_bytes(path, data)
            if not loaded.documents or not all(looks_like_spec(doc.value) for doc in loaded.documents):
                continue
        parsed = parse_template(data, path, config.jsonnet_args)
        if conventional and foreign_file(path, parsed, config):
            continue  # `.buildkite/pipeline.yml` and the like: named like a template, holds none
        specs = parsed.get("specs") or []
        images = sorted({spec["image"] for spec in specs if spec.get("image")})
        found.append(
            Found(path, [spec["pipeline"] for spec in specs], images[0] if images else "", conventional=conventional)
        )
    return found


def _is_dockerfile(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile")


def match_dockerfiles(found: List[Found], files: Sequence[str], config: Any) -> List[Tuple[Found, str]]:
    """Set each template's Dockerfile; returns the (template, Dockerfile) pairs that need configuration.

    The convention is `Dockerfile` next to the template. Otherwise the nearest `Dockerfile`
    in a folder above the template is taken; failing that, the only Dockerfile of the
    repository. Images already configured keep their configuration.
    """
    dockerfiles = [path for path in files if _is_dockerfile(path)]
    unconventional: List[Tuple[Found, str]] = []
    beside_of: Dict[str, str] = {}  # image -> a Dockerfile found beside another template of it
    for item in found:
        folder = item.template.rsplit("/", 1)[0] if "/" in item.template else ""
        beside = f"{folder}/Dockerfile" if folder else "Dockerfile"
        if item.image and beside in files:
            beside_of.setdefault(item.image, beside)
    for item in found:
        if not item.image:
            continue
        configured = config.image_config(item.image)
        folder = item.template.rsplit("/", 1)[0] if "/" in item.template else ""
        if configured is not None and configured.dockerfile:
            item.dockerfile = configured.dockerfile
            continue
        beside = f"{folder}/Dockerfile" if folder else "Dockerfile"
        if beside in files:
            item.dockerfile = beside
            continue
        choice = beside_of.get(item.image, "")
        parts = folder.split("/") if folder and not choice else []
        for depth in range(len(parts) - 1, -1, -1):
            candidate = "/".join(parts[:depth] + ["Dockerfile"])
            if candidate in files:
                choice = candidate
                break
        if not choice and len(dockerfiles) == 1:
            choice = dockerfiles[0]
        if choice:
            item.dockerfile = choice
            if all(image != item.image for image, _ in ((i.image, d) for i, d in unconventional)):
                unconventional.append((item, choice))
    return unconventional


# -- configuration --------------------------------------------------------------------


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(
    extra_templates: Sequence[str], images: Sequence[Tuple[str, str]], environment: Optional[Environment] = None
) -> str:
    """A .pachhook.toml holding what the conventions do not already give, and where each branch delivers.

    `environment` is the implicit one (core.environments), written out so that the file
    says which branch delivers where; teammates and reviewers see it instead of a rule.
    """
    lines = [
        "# Written by `pachhook init`: what the conventions do not cover, and where each branch delivers.",
        "# Every key is described in docs/configuration.md; environments in docs/environments.md.",
    ]
    if extra_templates:
        globs = list(DEFAULT_TEMPLATE_GLOBS) + list(extra_templates)
        lines.append("templates = [")
        lines += [f"    {_toml_string(glob)}," for glob in globs]
        lines.append("]")
    if environment is not None:  # a table: after the top-level keys
        lines += environment_text(environment)
    for image, dockerfile in images:
        context = dockerfile.rsplit("/", 1)[0] if "/" in dockerfile else "."
        lines += [
            "",
            f"[images.{_toml_string(image)}]",
            f"dockerfile = {_toml_string(dockerfile)}",
            f"context = {_toml_string(context)}",
        ]
    return "\n".join(lines) + "\n"


def environment_text(environment: Environment) -> List[str]:
    """The implicit environment as an `[environments.NAME]` table that delivers the same."""
    branches = ", ".join(_toml_string(branch) for branch in environment.branches)
    return [
        "",
        "# Commits on these branches are delivered; other branches are validated only.",
        f"[environments.{environment.name}]",
        f"branches = [{branches}]",
        "# No `context`: the active pachctl context (PACH_CONTEXT, else the one `pachctl config",
        '# get active-context` names). Name one to pin it: context = "NAME"; project = "NAME" too.',
    ]


# -- .pre-commit-config.yaml ----------------------------------------------------------


@dataclass
class HookSource:
    """Where pre-commit takes pachhook's hooks from: `local` (the installed pachhook) or a repository."""

    repo: str = LOCAL_REPO
    rev: str = ""  # the tag or commit pinned; empty for local hooks

    @property
    def local(self) -> bool:
        return self.repo == LOCAL_REPO

    def describe(self) -> str:
        if self.local:
            return "local hooks running the installed `pachhook`"
        return f"repo {self.repo} at {self.rev}"


def files_pattern(template_globs: Sequence[str], extra_templates: Sequence[str]) -> str:
    """pachhook-validate's `files` regex: the naming conventions plus every configured glob and template.

    A template the configuration lists by hand must be in the pattern, or pre-commit never
    hands it to the hook and a typo in it reaches a commit.
    """
    parts = [glob_regex(glob) for glob in template_globs if glob not in DEFAULT_TEMPLATE_GLOBS]
    parts += [re.escape(path) for path in extra_templates]
    parts = list(dict.fromkeys(parts))
    if not parts:
        return DEFAULT_FILES
    return DEFAULT_FILES + "|^(" + "|".join(parts) + ")$"


def _flow_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(items) + "]"


def hook_entry(source: HookSource, files: str, indent: str = "") -> str:
    """The repos entry for pachhook, as YAML text indented by `indent`."""
    if source.local:
        lines = [f"- repo: {LOCAL_REPO}", "  hooks:"]
        for hook in HOOKS:
            lines.append(f"    - id: {hook['id']}")
            lines.append(f"      name: {_yaml_scalar(hook['name'])}")
            lines.append(f"      entry: {hook['entry']}")
            lines.append("      language: system")
            if "types_or" in hook:
                lines.append(f"      types_or: {_flow_list(hook['types_or'])}")
            if "files" in hook:
                lines.append(f"      files: {_yaml_scalar(files)}")
            lines.append(f"      stages: {_flow_list(hook['stages'])}")
            for key in ("always_run", "pass_filenames", "verbose"):
                if key in hook:
                    lines.append(f"      {key}: {'true' if hook[key] else 'false'}")
    else:
        lines = [f"- repo: {_yaml_scalar(source.repo)}", f"  rev: {_yaml_scalar(source.rev)}", "  hooks:"]
        for hook_id in dict.fromkeys(HOOK_IDS.values()):  # the queue hook serves three hook types
            lines.append(f"    - id: {hook_id}")
            if hook_id == HOOK_IDS["pre-commit"] and files != DEFAULT_FILES:  # the hook given file names
                lines.append(f"      files: {_yaml_scalar(files)}")
    return "".join(indent + line + "\n" for line in lines)


def _yaml_scalar(text: str) -> str:
    # Single-quoted YAML: only the quote itself needs doubling, and nothing is interpreted.
    return "'" + text.replace("'", "''") + "'"


def new_precommit_config(source: HookSource, files: str) -> str:
    return (
        "# pre-commit (https://pre-commit.com) runs pachhook's hooks; `pachhook init` wrote this.\n"
        "# `repo: local` runs the pachhook installed where `git commit` runs (docs/hooks.md).\n"
        "minimum_pre_commit_version: '3.2.0'\n"
        f"default_install_hook_types: [{', '.join(HOOK_TYPES)}]\n"
        "repos:\n" + hook_entry(source, files, indent="  ")
    )


def _entry_ids(entry: Any) -> List[str]:
    if not isinstance(entry, dict):
        return []
    return [str(hook.get("id")) for hook in entry.get("hooks") or [] if isinstance(hook, dict)]


def _validate_files(entry: Dict[str, Any]) -> str:
    """The `files` pattern the entry gives pachhook-validate (the published default when unset)."""
    for hook in entry.get("hooks") or []:
        if isinstance(hook, dict) and hook.get("id") == HOOK_IDS["pre-commit"]:
            return str(hook.get("files") or DEFAULT_FILES)
    return DEFAULT_FILES


def _misses(pattern: str, templates: Sequence[str]) -> List[str]:
    try:
        compiled = re.compile(pattern)
    except re.error:
        return list(templates)
    return [path for path in templates if not compiled.search(path)]


def plan_precommit_config(
    text: str, source: Optional[HookSource], files: str, templates: Sequence[str]
) -> Tuple[Optional[str], str]:
    """(new text or None when nothing is to change, how it was done).

    `source` None keeps the hook source an existing entry names, except the unpublished
    repository init 0.1 wrote, which cannot install and becomes local hooks. An existing
    entry is rewritten when the source differs or its `files` misses one of `templates`.
    Raises InitError when the existing file is not a pre-commit configuration.
    """
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise InitError([f"{PRE_COMMIT_CONFIG}{where}: not valid YAML; fix it and run `pachhook init` again"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("repos", []), list):
        raise InitError(
            [f"{PRE_COMMIT_CONFIG}: expected a mapping with a `repos` list; fix it and run `pachhook init` again"]
        )
    repos = list(data.get("repos") or [])
    index = next((i for i, entry in enumerate(repos) if set(_entry_ids(entry)) & set(HOOK_IDS.values())), None)
    if index is None:
        wanted_source = source or HookSource()
        entry = yaml.safe_load(hook_entry(wanted_source, files))[0]
        wanted = dict(data)
        wanted["repos"] = repos + [entry]
        appended = _append_entry(text, data, wanted_source, files)
        how = f"appended pachhook's hooks (the rest of the file untouched); {wanted_source.describe()}"
        return _checked(appended, wanted, how)

    current = repos[index]
    current_source = HookSource(str(current.get("repo", "")), str(current.get("rev", "") or ""))
    reasons = []
    if source is None:
        wanted_source = current_source
        if (current_source.repo, current_source.rev) == (PUBLISHED_REPO, "v0.1.0"):
            wanted_source = HookSource()
            reasons.append(f"{PUBLISHED_REPO} has no release to install from")
    else:
        wanted_source = source
        if (source.repo, source.rev) != (current_source.repo, current_source.rev):
            reasons.append(f"was {current_source.describe()}")
    current_files = _validate_files(current)
    missed = _misses(current_files, templates)
    if missed:
        reasons.append(f"its `files` pattern left out {', '.join(missed)}")
    elif not reasons:
        return None, f"already runs pachhook's hooks ({current_source.describe()})"
    if not missed and wanted_source.local == current_source.local:
        files = current_files  # a pattern the user widened by hand stays
    entry = yaml.safe_load(hook_entry(wanted_source, files))[0]
    wanted = dict(data)
    wanted["repos"] = repos[:index] + [entry] + repos[index + 1 :]
    replaced = _replace_entry(text, index, wanted_source, files)
    how = f"rewrote pachhook's entry ({'; '.join(reasons)}): now {wanted_source.describe()}"
    return _checked(replaced, wanted, how)


def _checked(candidate: Optional[str], wanted: Dict[str, Any], how: str) -> Tuple[str, str]:
    """`candidate` when it parses to `wanted`; else the whole file rewritten from `wanted`."""
    if candidate is not None:
        try:
            if yaml.safe_load(candidate) == wanted:
                return candidate, how
        except yaml.YAMLError:
            pass
    rewritten = "# Rewritten by `pachhook init` from the parsed file: earlier comments were not kept.\n"
    rewritten += yaml.safe_dump(wanted, sort_keys=False, default_flow_style=False)
    return rewritten, how + " (the file was rewritten: its comments could not be kept)"


def _replace_entry(text: str, index: int, source: HookSource, files: str) -> Optional[str]:
    """The file with the `index`th repos item replaced as text (other lines untouched), when it can tell where."""
    try:
        document = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if not isinstance(document, yaml.MappingNode):
        return None
    sequence = next((value for key, value in document.value if getattr(key, "value", None) == "repos"), None)
    if not isinstance(sequence, yaml.SequenceNode) or sequence.flow_style or index >= len(sequence.value):
        return None
    lines = text.splitlines(keepends=True)
    item = sequence.value[index]
    start = item.start_mark.line
    prefix = lines[start][: item.start_mark.column]
    dash = prefix.rfind("-")
    if dash < 0 or prefix[:dash].strip() or prefix[dash + 1 :].strip():
        return None
    if index + 1 < len(sequence.value):
        end = sequence.value[index + 1].start_mark.line
    else:
        mark = sequence.end_mark
        end = mark.line if mark.column == 0 else mark.line + 1
    end = min(end, len(lines))
    # blank and comment lines before what follows belong to it, not to the entry replaced
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    replacement = hook_entry(source, files, indent=prefix[:dash])
    return "".join(lines[:start]) + replacement + "".join(lines[end:])


def _append_entry(text: str, data: Dict[str, Any], source: HookSource, files: str) -> Optional[str]:
    """The file with pachhook's entry added as text, when `repos` is its last top-level key."""
    body = text if text.endswith("\n") or not text else text + "\n"
    lines = body.splitlines()
    top_level = [i for i, line in enumerate(lines) if re.match(r"[^\s#-][^:]*:", line)]
    if "repos" not in data:
        return body + "repos:\n" + hook_entry(source, files, indent="  ")
    if not top_level or not lines[top_level[-1]].startswith("repos:"):
        return None
    header = lines[top_level[-1]]
    if header.split(":", 1)[1].strip() not in ("", "[]") and not header.split(":", 1)[1].strip().startswith("#"):
        return None  # a flow list `repos: [...]`: appending block items would not extend it
    if header.split(":", 1)[1].strip() == "[]":
        lines[top_level[-1]] = "repos:"
        body = "\n".join(lines) + "\n"
    items = [line for line in lines[top_level[-1] + 1 :] if line.lstrip().startswith("- ")]
    indent = items[0][: len(items[0]) - len(items[0].lstrip())] if items else "  "
    return body + hook_entry(source, files, indent=indent)


# -- hook installation ----------------------------------------------------------------


def installed_by_precommit(hooks_dir: Path, hook_type: str) -> bool:
    path = hooks_dir / hook_type
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "pre-commit" in text and f"--hook-type={hook_type}" in text


def install_hooks(root: Path, hook_types: Sequence[str]) -> Tuple[bool, List[str]]:
    """`pre-commit install` for the given hook types; (ok, pre-commit's output lines)."""
    argv = [sys.executable, "-m", "pre_commit", "install"]
    for hook_type in hook_types:
        argv += ["--hook-type", hook_type]
    try:
        completed = subprocess.run(
            argv, cwd=str(root), stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, [f"cannot run pre-commit: {error}"]
    lines = [line for line in (completed.stdout + completed.stderr).splitlines() if line.strip()]
    return completed.returncode == 0, lines


# -- the whole run --------------------------------------------------------------------


def run_init(
    cwd: Optional[Path] = None,
    source: Optional[HookSource] = None,
    install: bool = True,
    dry_run: bool = False,
) -> InitResult:
    """Plan and (unless dry_run) apply every step of `pachhook init`; InitError when it cannot.

    `source` None: local hooks for a new entry, an existing entry's source kept.
    """
    try:
        root = gitrepo.repo_root(cwd)
        hooks_dir = gitrepo.hooks_dir(cwd)
    except gitrepo.GitError as error:
        raise InitError(
            [f"{error}: run `pachhook init` inside the repository to set up (or `git init` first)"]
        ) from None
    try:
        config = load_config(root)
    except ConfigError as error:
        raise InitError(error.problems) from None

    result = InitResult(root=str(root))
    files = repository_files(root)
    result.templates = discover_templates(root, files, config)
    needs_image_config = match_dockerfiles(result.templates, files, config)
    extra_templates = [item.template for item in result.templates if not item.conventional]
    actions = result.actions

    if not result.templates:
        actions.append(
            Action(
                "note",
                "",
                "no pipeline templates found yet: name them pipeline.json|yaml or "
                "NAME.pipeline.json|yaml and run `pachhook init` again",
            )
        )
    for item in result.templates:
        if item.image and not item.dockerfile:
            actions.append(
                Action(
                    "note",
                    item.template,
                    f"no Dockerfile found for {item.image}: add one beside the template, or set "
                    f'[images."{item.image}"] dockerfile in {PACHHOOK_CONFIG}',
                )
            )

    # Configuration: what conventions miss and where branches deliver; never an edit of the user's own file.
    images = [(item.image, dockerfile) for item, dockerfile in needs_image_config]
    implicit = None if config.environments else implicit_environment(config, root)
    if config.source is None:
        assert implicit is not None  # no file, so no environments configured
        text = config_text(extra_templates, images, implicit)
        action = Action("write", PACHHOOK_CONFIG, _config_reason(extra_templates, images, implicit))
        if not dry_run:
            _write(root / PACHHOOK_CONFIG, text)
            action.done = True
        actions.append(action)
    else:
        where = os.path.relpath(config.source, root)
        wanted = [f"templates += {t!r}" for t in extra_templates]
        wanted += [f'images."{image}".dockerfile = {d!r}' for image, d in images]
        if implicit is not None:
            # its `branches` become the environment's (an [environments] table refuses a top-level one)
            wanted.append(
                f"[environments.{implicit.name}] branches = [{', '.join(repr(b) for b in implicit.branches)}]"
                + (" in place of the top-level `branches`" if config.branches else "")
                + f" (now {_delivers(implicit)})"
            )
        if wanted:
            actions.append(Action("note", where, f"not changing your configuration; it may need: {', '.join(wanted)}"))
        else:
            actions.append(Action("keep", where, f"configuration: {where} covers every template and Dockerfile"))

    # .pre-commit-config.yaml: the hook's `files` covers every template found or configured.
    hook_files = files_pattern(config.templates, extra_templates)
    precommit = root / PRE_COMMIT_CONFIG
    if precommit.exists():
        try:
            old = precommit.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InitError([f"{PRE_COMMIT_CONFIG}: cannot read: {error}"]) from None
        new, how = plan_precommit_config(old, source, hook_files, [item.template for item in result.templates])
        if new is None:
            actions.append(Action("keep", PRE_COMMIT_CONFIG, how))
        else:
            action = Action("rewrite" if how.startswith("rewrote") else "extend", PRE_COMMIT_CONFIG, how)
            if not dry_run:
                _write(precommit, new)
                action.done = True
            actions.append(action)
    else:
        wanted_source = source or HookSource()
        action = Action("write", PRE_COMMIT_CONFIG, f"pachhook's three hooks: {wanted_source.describe()}")
        if not dry_run:
            _write(precommit, new_precommit_config(wanted_source, hook_files))
            action.done = True
        actions.append(action)

    # The three hook types.
    missing = [hook_type for hook_type in HOOK_TYPES if not installed_by_precommit(hooks_dir, hook_type)]
    if not install:
        actions.append(
            Action(
                "note",
                str(hooks_dir),
                "hooks not installed (--no-install): run `pre-commit install` to install " + ", ".join(HOOK_TYPES),
            )
        )
    elif not missing:
        actions.append(Action("keep", str(hooks_dir), "pre-commit already installed for " + ", ".join(HOOK_TYPES)))
    else:
        action = Action("install", str(hooks_dir), "pre-commit installed for " + ", ".join(missing))
        if not dry_run:
            # pachhook's own plain hooks give way: kept as *.legacy they would run everything twice.
            replaced = [t for t in missing if (hooks_dir / t).is_file() and is_ours(hooks_dir / t)]
            for hook_type in replaced:
                (hooks_dir / hook_type).unlink()
            if replaced:
                action.message += f" (replacing pachhook's plain {', '.join(replaced)} hook)"
            ok, lines = install_hooks(root, missing)
            if not ok:
                raise InitError(
                    [f"pre-commit install failed: {line}" for line in lines[-3:]] or ["pre-commit install failed"]
                )
            # Recorded as `pachhook install` records it, so that `pachhook uninstall` removes them.
            record_installed(gitrepo.git_common_dir(root), PRE_COMMIT, HOOK_TYPES)
            migrated = [line for line in lines if "migration mode" in line.lower()]
            if migrated:
                action.message += " (existing hooks kept: pre-commit runs them first, as *.legacy)"
            action.done = True
        actions.append(action)
    return result


def _delivers(environment: Environment) -> str:
    """`branch main delivers to env default (the active pachctl context)`."""
    several = len(environment.branches) > 1
    branches = ", ".join(environment.branches)
    return f"branch{'es' if several else ''} {branches} deliver{'' if several else 's'} to {environment.describe()}"


def _config_reason(
    extra_templates: Sequence[str], images: Sequence[Tuple[str, str]], environment: Optional[Environment] = None
) -> str:
    """`branch main delivers to env default (...); for templates with unconventional names (...)`."""
    parts = []
    if extra_templates:
        parts.append(f"templates with unconventional names ({', '.join(extra_templates)})")
    if images:
        parts.append(
            "Dockerfiles not beside their template ("
            + ", ".join(f"{image} <- {dockerfile}" for image, dockerfile in images)
            + ")"
        )
    reasons = [_delivers(environment)] if environment is not None else []
    if parts:
        reasons.append("for " + " and ".join(parts))
    return "; ".join(reasons)


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".pachhook-tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
