"""`pachhook validate`: check pipeline spec templates (the pre-commit and pre-push hook).

Exit status: 0 no errors (warnings allowed), 1 errors found, 2 bad usage,
3 an internal error (a bug in pachhook: please report it).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # the hook imports nothing it does not use (typing ~6 ms, pathlib ~8 ms)
    import argparse
    from pathlib import Path
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from pachhook.core.config import Config
    from pachhook.core.diagnostics import Diagnostic

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2  # and 3, an internal error, from pachhook.cli.guard


def build_parser() -> argparse.ArgumentParser:
    from pachhook.commands._common import new_parser

    parser = new_parser(
        prog="pachhook validate",
        description=(
            "Check Pachyderm pipeline spec templates (JSON or YAML) against the pachctl 2.x"
            " pipeline spec and rules. Placeholders ({{ commit }}, {{ short_commit }},"
            " {{ tag }}, {{ branch }}) are filled with sample values first."
        ),
        epilog=(
            "With no FILE, checks the templates named by the repository configuration, or"
            " files named pipeline.json|yaml|yml and *.pipeline.json|yaml|yml|jsonnet (Jsonnet"
            " templates are rendered with sample commit values and `jsonnet_args`)."
            " Exit status: 0 no errors, 1 errors found, 2 bad usage, 3 internal error."
        ),
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="output format: text lines (default), a JSON list, or GitHub annotations",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also fetch the JSON schema the cluster serves (pachd 2.8+, at the active pachctl"
        " context's address; cached per pachd version) and report where it and pachhook's disagree",
    )
    parser.add_argument(
        "--cluster-url",
        metavar="URL",
        help="with --cluster: the schema's URL, instead of the one derived from the pachctl context",
    )
    parser.add_argument(
        "--pachyderm-version",
        metavar="VERSION",
        help="check for this Pachyderm version (e.g. 2.9): fields newer than it are errors"
        " (default: the configuration's pachyderm_version, else the newest)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat an image without a tag, or tagged :latest, as an error",
    )
    parser.add_argument(
        "--staged",
        action="store_true",
        help=(
            "check the templates staged for the next commit, as the index holds them (the plain"
            " pre-commit hook); nothing when none is staged; untracked and unstaged files are not read"
        ),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also name each file skipped because it is named like a template but holds no pipeline spec",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="template files to check; a folder means the templates inside it",
    )
    return parser


# What the plain pre-commit hook runs on every commit: `pachhook validate --staged`. That
# command line is read without argparse, which costs the hook ~15 ms (gettext, locale and
# shutil come with its first parser); any other goes through build_parser.
HOOK_ARGV = ("--staged",)


class HookArgs:
    """The options build_parser gives for HOOK_ARGV (a test keeps the two the same)."""

    def __init__(self) -> None:
        self.format = "text"
        self.cluster = False
        self.cluster_url: Optional[str] = None
        self.pachyderm_version: Optional[str] = None
        self.strict = False
        self.staged = True
        self.verbose = False
        self.files: List[str] = []


def main(argv: Optional[Sequence[str]] = None) -> int:
    if tuple(sys.argv[1:] if argv is None else argv) == HOOK_ARGV:
        return _run_staged(HookArgs())
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # pre-commit passes file names after the hook's arguments with no `--` before them:
        # a template in a folder named `-rf` arrives as `-rf/pipeline.json`. An unknown
        # "option" that names an existing path is that file.
        unknown = [arg for arg in extra if not os.path.exists(arg)]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as stop:  # argparse has printed the usage error
        return EXIT_USAGE if stop.code else EXIT_OK
    args.files = list(args.files) + extra
    if args.staged:
        if args.files:
            print("pachhook validate: error: --staged takes no FILE (it checks what the index holds)", file=sys.stderr)
            return EXIT_USAGE
        return _run_staged(args)
    return _run(args)


def _run_staged(args: Any) -> int:
    """Validate the staged templates from their index blobs: what the commit will hold.

    A good copy left in the work tree cannot hide a broken staged one, and an untracked
    draft never blocks a commit. Names come from `git diff --cached`, content from the
    blobs `git ls-files -s` names, read in one `git cat-file --batch`.
    """
    from pachhook.core import gitrepo
    from pachhook.core.config import ConfigError, load_config
    from pachhook.core.globs import find_templates

    try:
        # both at once: git answers the two questions on two cores
        diff = gitrepo.run_soon(["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR", "--no-renames"])
        where = gitrepo.run(["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"])
        listed = diff()
        # outside a repository `diff --cached` complains of its option; rev-parse says what is wrong
        for result, command in ((where, "rev-parse"), (listed, "diff")):
            if result.returncode != 0:
                raise gitrepo.GitError(gitrepo.complaint(result, command))
    except gitrepo.GitError as error:
        print(f"pachhook: cannot list the staged files: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    toplevel, common_dir = (line.decode("utf-8", "surrogateescape") for line in where.stdout.split(b"\n")[:2])
    names = [name.decode("utf-8", "surrogateescape") for name in listed.stdout.split(b"\0") if name]
    # The post-commit hook keeps the parsed configuration in pachhook's folder of the git
    # common dir: read there, the TOML parser (~20 ms to import) is not loaded on every
    # commit. No folder is made for it here.
    queue_folder = gitrepo.state_folder(common_dir)
    try:
        config = load_config(toplevel, cache_dir=queue_folder if os.path.isdir(queue_folder) else None)
    except ConfigError as error:
        for problem in error.problems:
            print(f"pachhook: {problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    staged = find_templates(names, config.templates)
    if not staged:
        if args.format == "json":
            print("[]")
        elif args.format == "text":
            print("pachhook: no pipeline templates staged", file=sys.stderr)
        return EXIT_OK
    from pachhook.validate import reporters as report
    from pachhook.validate.checks import has_errors, validate_bytes

    listing = gitrepo.git(["ls-files", "-s", "-z", "--", *staged], toplevel, literal_pathspecs=True)
    blobs: Dict[str, str] = {}
    for record in listing.split(b"\0"):
        meta, _, raw = record.partition(b"\t")
        if meta:
            blobs[raw.decode("utf-8", "surrogateescape")] = meta.split()[1].decode()
    try:
        version = _target_version(args.pachyderm_version, config)
    except ValueError as error:
        print(f"pachhook: {error}", file=sys.stderr)
        return EXIT_PROBLEMS if args.pachyderm_version is None else EXIT_USAGE
    contents = gitrepo.read_blobs(blobs.values(), toplevel)
    from pachhook.core.globs import GlobSet
    from pachhook.spec.sniff import by_convention_only, has_conventional_name, looks_like_template
    from pachhook.validate.checks import NOT_A_TEMPLATE

    cwd = os.getcwd()
    diagnostics = []
    checked = 0
    for name in staged:
        shown = os.path.relpath(os.path.join(toplevel, name), cwd)
        data = contents.get(blobs.get(name, ""))
        if data is None:
            print(f"pachhook: {shown}: cannot read the staged file from git", file=sys.stderr)
            return EXIT_PROBLEMS
        if (
            has_conventional_name(name)
            and not looks_like_template(name, data)
            and by_convention_only(name, config.templates, lambda globs, path: GlobSet(globs).matches(path))
        ):
            # `.buildkite/pipeline.yml` and the like, as the file form judges them: no template
            if args.verbose:
                print(f"pachhook: {shown}: {NOT_A_TEMPLATE}", file=sys.stderr)
            continue
        checked += 1
        diagnostics += validate_bytes(shown, data, args.strict, config.jsonnet_args, str(config.tag), version)
    output = report.render(diagnostics, args.format)
    if output or args.format == "json":
        print(output)
    if args.format == "text":
        summary = report.summary(diagnostics, checked) if checked else "no pipeline templates staged"
        print(f"pachhook: {summary}", file=sys.stderr)
    return EXIT_PROBLEMS if has_errors(diagnostics) else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pachhook.validate import reporters as report
    from pachhook.validate.checks import has_errors, validate_paths

    files: List[str] = []
    skipped: List[str] = []
    for given in args.files or [None]:
        if given is None or os.path.isdir(given):
            from pachhook.core.config import ConfigError  # only here: pre-commit names files

            try:
                files += _configured_templates(given, skipped)  # a folder: the templates inside it
            except ConfigError as error:
                for problem in error.problems:
                    print(f"pachhook: {problem}", file=sys.stderr)
                return EXIT_PROBLEMS
        elif _foreign(given):
            skipped.append(given)
        else:
            files.append(given)
    if args.verbose:
        from pachhook.validate.checks import NOT_A_TEMPLATE

        for name in skipped:
            print(f"pachhook: {name}: {NOT_A_TEMPLATE}", file=sys.stderr)
    # a file named twice (`dir/ dir/x.json`) is checked once, under its first name
    unique: Dict[str, str] = {}
    for name in files:
        unique.setdefault(os.path.realpath(name), name)
    files = list(unique.values())
    jsonnet_args: Dict[str, str] = {}
    if any(name.endswith(".jsonnet") for name in files):
        # only now: the configuration is read for Jsonnet templates' `jsonnet_args`
        from pachhook.core.config import ConfigError, load_config

        try:
            jsonnet_args = load_config(_repository_root(Path.cwd())).jsonnet_args
        except ConfigError as error:
            for problem in error.problems:
                print(f"pachhook: {problem}", file=sys.stderr)
            return EXIT_PROBLEMS
    try:
        version = _target_version(args.pachyderm_version)
    except ValueError as error:
        print(f"pachhook: {error}", file=sys.stderr)
        return EXIT_PROBLEMS if args.pachyderm_version is None else EXIT_USAGE
    diagnostics = validate_paths(
        files, strict=args.strict, jsonnet_args=jsonnet_args, tag_form=_tag_form(), version=version
    )
    at_push = not args.cluster and bool(os.environ.get("PRE_COMMIT_REMOTE_NAME")) and _schema_from_cluster()
    if args.cluster or at_push:
        found = _cluster_diagnostics(files, args.cluster_url)
        if found is None and not at_push:
            return EXIT_PROBLEMS
        # at pre-push an unreachable cluster is said (above) but stops no push
        diagnostics += found or []
        diagnostics.sort(key=lambda item: (item.file, item.line, item.column))
    output = report.render(diagnostics, args.format)
    if output or args.format == "json":  # json: always a list, `[]` when all is well
        print(output)
    if args.format == "text":
        summary = report.summary(diagnostics, len(files)) if files else ("no pipeline templates found")
        print(f"pachhook: {summary}", file=sys.stderr)
    return EXIT_PROBLEMS if has_errors(diagnostics) else EXIT_OK


def _foreign(name: str) -> bool:
    """A file pre-commit (or the user) named that only the naming conventions make a template, holding none.

    `.buildkite/pipeline.yml` must never refuse a commit. The content is looked at first;
    the configuration (TOML costs the hook ~30 ms) only for a file that holds no spec.
    """
    from pathlib import Path

    from pachhook.spec.sniff import has_conventional_name, looks_like_template

    if not has_conventional_name(name.replace(os.sep, "/")):
        return False
    try:
        with open(name, "rb") as handle:
            data = handle.read(2 * 1024 * 1024 + 1)
    except OSError:
        return False  # validating it says why it cannot be read
    if looks_like_template(name, data):
        return False
    from pachhook.core.config import ConfigError, load_config
    from pachhook.validate.checks import is_foreign

    root = _repository_root(Path(name).resolve().parent)
    try:
        globs = load_config(root).templates
    except ConfigError:
        return False  # checked as before; the configuration's problem is reported elsewhere
    relative = os.path.relpath(os.path.realpath(name), os.path.realpath(root)).replace(os.sep, "/")
    return is_foreign(name, relative, globs)


def _configured_templates(folder: Optional[str], skipped: Optional[List[str]] = None) -> List[str]:
    """Templates the repository configuration names, under `folder` (default: everywhere)."""
    from pathlib import Path

    from pachhook.core.config import load_config
    from pachhook.validate.checks import working_tree_templates

    cwd = Path.cwd()
    start = Path(folder).resolve() if folder else cwd
    root = _repository_root(start)
    config = load_config(root)
    foreign: List[str] = []
    templates = working_tree_templates(root, config, foreign)
    if skipped is not None:
        skipped += [os.path.relpath(root / path, cwd) for path in foreign]
    if folder:  # shown under the folder as the user wrote it: `examples/edges/pipeline.json`
        return [os.path.join(folder, os.path.relpath(path, start)) for path in templates if _is_within(path, start)]
    return [os.path.relpath(path, cwd) for path in templates]


def _config_if_it_sets(pattern: str) -> "Optional[Config]":
    """The repository's configuration, parsed only when a configuration file's text matches
    `pattern`: the TOML parser costs the hook ~30 ms, and most repositories set none of the
    keys validate reads. Raises ConfigError for a configuration that cannot be read."""
    import re
    from pathlib import Path

    from pachhook.core.config import load_config

    root = _repository_root(Path.cwd())
    for name in ("pyproject.toml", ".pachhook.toml"):
        try:
            text = (root / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(pattern, text, re.MULTILINE):
            return load_config(root)
    return None


def _tag_form() -> str:
    """The configuration's `tag` (the tag delivery pushes), "full" when it cannot be read."""
    from pachhook.core.config import ConfigError

    try:
        config = _config_if_it_sets(r"""^\s*tag\s*=\s*["']short["']""")
    except (ConfigError, OSError):
        return "full"  # a bad configuration is reported by the commands that need it
    return str(config.tag) if config else "full"


def _cluster_diagnostics(files: List[str], url: Optional[str]) -> Optional[List[Diagnostic]]:
    """Where the cluster's schema and pachhook's disagree; None (said why) when unreachable."""
    from pachhook.validate import cluster

    try:
        target = url or cluster.schema_url(cluster.pachctl_address())
        fetched = cluster.fetch(target, cluster.pachd_version())
    except cluster.ClusterError as error:
        print(f"pachhook: cluster schema: {error}", file=sys.stderr)
        return None
    origin = "cached" if fetched.cached else "fetched"
    version = f" (pachd {fetched.version})" if fetched.version else ""
    print(f"pachhook: cluster schema {origin} from {fetched.url}{version}", file=sys.stderr)
    return cluster.compare_paths(files, fetched)


def _schema_from_cluster() -> bool:
    """The configuration's schema_from_cluster (parsed only when its text names the key)."""
    from pachhook.core.config import ConfigError

    try:
        config = _config_if_it_sets(r"^\s*schema_from_cluster\s*=")
    except ConfigError:
        return False  # a bad configuration is reported by the commands that need it
    return bool(config and config.schema_from_cluster)


def _target_version(given: Optional[str], config: Optional[Config] = None) -> Optional[Tuple[int, int]]:
    """The Pachyderm version to check for: --pachyderm-version, else the configuration's
    `pachyderm_version`, else None (the newest). Raises ValueError for a bad one.

    Like `_tag_form`, the configuration is parsed only when its text names the key, unless
    the caller has it already (`config`).
    """
    from pachhook.spec.versions import parse_version

    if given is not None:
        version = parse_version(given)
        if version is None or version[0] < 2:
            raise ValueError(f'--pachyderm-version must be a Pachyderm 2.x version such as "2.9", not {given!r}')
        return version
    from pachhook.core.config import ConfigError

    try:
        if config is None:
            config = _config_if_it_sets(r"^\s*pachyderm_version\s*=")
    except ConfigError as error:
        raise ValueError("; ".join(error.problems)) from None
    configured = config.pachyderm_version if config else None
    return parse_version(configured) if configured else None


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _repository_root(start: Path) -> Path:
    """The closest folder holding `.git` (a folder, or a file in a worktree), else start.

    Found by looking, not by running git: this runs on every commit.
    """
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start
