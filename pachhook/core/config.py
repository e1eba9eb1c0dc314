"""Repository configuration: `[tool.pachhook]` in pyproject.toml, else `.pachhook.toml`.

With neither file, conventions serve (see docs/configuration.md). The TOML parser is
imported only when a file actually mentions pachhook, so the post-commit hook of a
repository that relies on conventions never pays for it.
"""

from __future__ import annotations

import os

from pachhook.core.globs import glob_problem
from pachhook.core.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from pathlib import Path
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# Finished jobs kept per pipeline before older ones move to the provenance ledger (issue 16).
DEFAULT_KEEP_JOBS = 50
# images of one commit built at once: two keep a 2-core laptop busy (one build's RUN steps
# while another pulls, exports or pushes) without starving the rest of the machine
DEFAULT_BUILD_CONCURRENCY = 2

DEFAULT_TEMPLATE_GLOBS = (
    "**/pipeline.json",
    "**/pipeline.yaml",
    "**/pipeline.yml",
    "**/*.pipeline.json",
    "**/*.pipeline.yaml",
    "**/*.pipeline.yml",
    "**/pipeline.jsonnet",
    "**/*.pipeline.jsonnet",
)

TAG_FORMS = ("full", "short")
WORKER_MODES = ("background", "manual")
BACKENDS = ("pachctl", "api")


class ImageConfig(Record):
    """How to build one image repository (the part of transform.image before the tag)."""

    __slots__ = (
        "name",
        "dockerfile",
        "context",
        "build_args",
        "platform",
        "target",
        "network",
        "secrets",
        "submodules",
        "cache",
        "builder",
    )

    def __init__(
        self,
        name: str,
        dockerfile: Optional[str] = None,
        context: Optional[str] = None,
        build_args: Optional[Dict[str, str]] = None,
    ) -> None:
        self.name = name
        self.dockerfile = dockerfile  # relative to the repo root; default: <template dir>/Dockerfile
        self.context = context  # relative to the repo root; default: the template's directory
        self.build_args: Dict[str, str] = dict(build_args or {})
        self.platform: Optional[str] = None  # e.g. linux/amd64; default: DOCKER_DEFAULT_PLATFORM, else linux/amd64
        self.target: Optional[str] = None  # the Dockerfile stage to build
        self.network: Optional[str] = None  # as `docker build --network`
        # BuildKit secrets by id: ("env", VARIABLE) or ("src", FILE); never their values.
        self.secrets: Dict[str, Tuple[str, str]] = {}
        self.submodules = False  # check submodules out into the context
        # BuildKit's cache between machines (deliver/buildcache.py): "inline" (default), "registry"
        # (a separate cache image, needs buildx) or "none"; builder: a buildx builder's name
        self.cache = "inline"
        self.builder: Optional[str] = None


class Config(Record):
    """The settings of one repository; `root` and `source` are Paths (made on first use)."""

    __slots__ = (
        "_root",
        "_source",
        "templates",
        "images",
        "branches",
        "tag",
        "pin_digest",
        "reprocess",
        "worker",
        "pachctl",
        "backend",
        "jsonnet_args",
        "plan_on_push",
        "pachyderm_version",
        "schema_from_cluster",
        "verify",
        "verify_timeout",
        "keep_jobs",
        "notify",
        "build_concurrency",
        "environments",
    )

    def __init__(
        self,
        root: Any,
        source: Any = None,
        templates: Optional[List[str]] = None,
        images: Optional[Dict[str, ImageConfig]] = None,
        branches: Optional[List[str]] = None,
        tag: str = "full",
        pin_digest: bool = False,
        reprocess: bool = False,
        worker: str = "background",
        pachctl: str = "pachctl",
        backend: str = "pachctl",
        jsonnet_args: Optional[Dict[str, str]] = None,
        plan_on_push: bool = False,
        pachyderm_version: Optional[str] = None,
        schema_from_cluster: bool = False,
        verify: bool = True,
        verify_timeout: float = 300.0,
        keep_jobs: int = DEFAULT_KEEP_JOBS,
        notify: bool = True,
        build_concurrency: int = DEFAULT_BUILD_CONCURRENCY,
    ) -> None:
        self._root = os.fspath(root)
        self._source = (
            None if source is None else os.fspath(source)
        )  # the file the configuration came from, None for conventions
        self.templates: List[str] = list(templates) if templates is not None else list(DEFAULT_TEMPLATE_GLOBS)
        self.images: Dict[str, ImageConfig] = dict(images or {})
        self.branches = branches  # None: the default branch only (see core.environments)
        self.tag = tag  # "full" | "short" commit SHA
        self.pin_digest = pin_digest
        self.reprocess = reprocess
        self.worker = worker  # "background" | "manual"
        self.pachctl = pachctl
        self.backend = backend  # "pachctl" | "api"
        # extra top-level arguments of Jsonnet templates (strings, as pachd passes --arg)
        self.jsonnet_args: Dict[str, str] = dict(jsonnet_args or {})
        self.plan_on_push = plan_on_push  # pre-push prints a one-line plan per pipeline
        # the Pachyderm version specs are checked for ("2.9"); None: the newest pachhook knows
        self.pachyderm_version = pachyderm_version
        # the pre-push validate also compares specs with the schema the cluster serves
        self.schema_from_cluster = schema_from_cluster
        # after an update, wait (at most verify_timeout seconds) for the job it started
        self.verify = verify
        self.verify_timeout = verify_timeout
        # finished jobs kept per pipeline; older ones move to the provenance ledger
        self.keep_jobs = keep_jobs
        self.notify = notify  # a desktop notification when a background delivery fails
        self.build_concurrency = build_concurrency  # images of one commit built at once
        # [environments.NAME] tables (core.environments.Environment by name); empty: the
        # implicit environment (top-level `branches`, else the default branch only)
        self.environments: Dict[str, Any] = {}

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    @property
    def source(self) -> Optional[Path]:
        from pathlib import Path

        return None if self._source is None else Path(self._source)

    def deploys_branch(self, branch: str) -> bool:
        """Whether commits of `branch` (short name, "" when detached) are delivered anywhere."""
        from pachhook.core.environments import environment_for

        return environment_for(self, branch, self._root) is not None

    def image_config(self, image: str) -> Optional[ImageConfig]:
        return self.images.get(image)


class ConfigError(Exception):
    """The configuration file is unreadable or holds bad keys or values.

    `problems` holds one line per problem, each naming the file, the line and the key.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def load_config(root: Any, cache_dir: Any = None) -> Config:
    """Read the configuration of the repository at root (conventions when there is none).

    Raises ConfigError for an unreadable file, unknown keys and bad values. With
    `cache_dir`, parsed TOML is kept there (keyed by the file's size and mtime), because
    importing the TOML parser costs ~30 ms, more than the rest of the post-commit hook.
    """
    root = os.fspath(root)
    pyproject = os.path.join(root, "pyproject.toml")
    text = _read(pyproject)
    if text is not None and "pachhook" in text:
        data = _parse_toml(pyproject, text, cache_dir)
        section = data.get("tool", {})
        section = section.get("pachhook") if isinstance(section, dict) else None
        if section is not None:
            return parse_section(root, pyproject, text, section, ("tool", "pachhook"))
    dotfile = os.path.join(root, ".pachhook.toml")
    text = _read(dotfile)
    if text is not None:
        data = _parse_toml(dotfile, text, cache_dir)
        return parse_section(root, dotfile, text, data, ())
    return Config(root=root)


def load_config_at(root: Any, commit: str, cache_dir: Any = None) -> Config:
    """The configuration as it stands in `commit`'s tree, never the work tree.

    Delivery builds and applies what a commit holds: build arguments, Dockerfiles, tags
    and environments edited but not committed must not leak into it. Raises ConfigError
    (one line per problem) like load_config; `cache_dir` as there.
    """
    root = os.fspath(root)
    files = _files_at(root, commit)
    for name in CONFIG_FILES:
        data = files[name]
        if data is None:
            continue
        path = os.path.join(root, name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError([f"{name} at {commit[:12]}: cannot read: {error}"]) from None
        if name == "pyproject.toml":
            if "pachhook" not in text:
                continue
            section = _parse_toml(path, text, cache_dir).get("tool", {})
            section = section.get("pachhook") if isinstance(section, dict) else None
            if section is None:
                continue
            return parse_section(root, path, text, section, ("tool", "pachhook"))
        return parse_section(root, path, text, _parse_toml(path, text, cache_dir), ())
    return Config(root=root)


# The files a configuration may be in, in the order they are looked at.
CONFIG_FILES = ("pyproject.toml", ".pachhook.toml")


def _files_at(root: str, commit: str) -> Dict[str, Optional[bytes]]:
    """The bytes of each of CONFIG_FILES in `commit`'s tree (None when absent), read by one
    git process. A delivery reads the commit's configuration once per step (build, update,
    the commit's plan); the files of a full SHA are kept for the process by gitrepo, so
    only the first read starts git."""
    from pachhook.core import gitrepo

    try:
        return gitrepo.show_files(commit, CONFIG_FILES, root)
    except gitrepo.GitError:  # as `git cat-file blob` failing: no such file to read
        return dict.fromkeys(CONFIG_FILES)


def read_files_ahead(root: str, commit: str) -> Callable[[], object]:
    """Start reading CONFIG_FILES of `commit` now; what is returned waits for git, and the
    files are then kept (by gitrepo) for `load_config_at`. A failure is left for it to meet."""
    from pachhook.core import gitrepo

    try:
        answer = gitrepo.show_files_soon(commit, CONFIG_FILES, root)
    except gitrepo.GitError:
        return lambda: None
    return lambda: gitrepo.read_quietly(answer)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([f"{os.path.basename(path)}: cannot read: {error}"]) from None


_CACHE_NAME = "config.cache"


def _parse_toml(path: str, text: str, cache_dir: Any = None) -> Dict[str, Any]:
    import marshal  # built in: free to import, unlike json

    cache_file = os.path.join(os.fspath(cache_dir), _CACHE_NAME) if cache_dir is not None else None
    key = (path, text)
    if cache_file is not None:
        try:
            with open(cache_file, "rb") as handle:
                cached_key, cached = marshal.load(handle)
            if cached_key == key:
                parsed: Dict[str, Any] = cached
                return parsed
        except (OSError, EOFError, ValueError, TypeError):
            pass
    data = _parse_toml_text(path, text)
    if cache_file is not None:
        try:
            # Written aside then renamed: a concurrent reader sees the old file or the new one.
            temporary = f"{cache_file}.{os.getpid()}"
            with open(temporary, "wb") as handle:
                marshal.dump((key, data), handle)
            os.replace(temporary, cache_file)
        except (OSError, ValueError):
            pass  # values marshal cannot hold (dates): simply not cached
    return data


# (path, text) -> the TOML it parses to: one delivery parses its commit's configuration in
# each step (~2 ms each); a copy is handed out, so no caller changes another's.
_PARSED: Dict[Tuple[str, str], Dict[str, Any]] = {}
_PARSED_LIMIT = 32


def _parse_toml_text(path: str, text: str) -> Dict[str, Any]:
    import copy

    key = (path, text)
    if key not in _PARSED:
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.pop(next(iter(_PARSED)), None)  # the oldest
        _PARSED[key] = _parse_toml_now(path, text)
    return copy.deepcopy(_PARSED[key])


def _parse_toml_now(path: str, text: str) -> Dict[str, Any]:
    import re

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        data: Dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as error:
        # The decoder's message ends with "(at line N, column M)": lift the line out.
        message = str(error)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        where = f":{found.group(1)}" if found else ""
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        raise ConfigError([f"{os.path.basename(path)}{where}: invalid TOML: {message}"]) from None


def parse_section(root: Any, source: Any, text: str, section: Any, prefix: Tuple[str, ...]) -> Config:
    """Build a Config from the parsed `[tool.pachhook]` table (or `.pachhook.toml` body)."""
    checker = _Checker(source, text, prefix)
    config = Config(root=root, source=source)
    if not isinstance(section, dict):
        checker.problem((), "must be a table")
        raise ConfigError(checker.problems)
    for key, value in section.items():
        handler = _KEYS.get(key)
        if handler is None:
            checker.problem((key,), f"unknown key (known keys: {', '.join(sorted(_KEYS))})")
            continue
        handler(checker, config, value)
    if config.environments and "branches" in section:
        checker.problem(
            ("branches",), "with [environments] configured, each environment names its own `branches`; remove this key"
        )
    if checker.problems:
        raise ConfigError(checker.problems)
    return config


class _Checker:
    """Collects problems, each placed on the line of the file where its key is written."""

    def __init__(self, source: Any, text: str, prefix: Tuple[str, ...]) -> None:
        self.name = os.path.basename(os.fspath(source))
        self.lines = text.splitlines()
        self.prefix = prefix
        self.problems: List[str] = []

    def problem(self, keys: Tuple[str, ...], message: str) -> None:
        dotted = ".".join(_quote_key(k) for k in self.prefix + keys)
        line = self.line_of(keys)
        where = f"{self.name}:{line}" if line else self.name
        self.problems.append(f"{where}: {dotted or 'configuration'}: {message}")

    def line_of(self, keys: Tuple[str, ...]) -> int:
        """Best line for a key path: tomllib keeps no positions, so scan the text.

        Each key is looked for at or after the line where its parent was found; the
        parent's own line stands in when the key itself cannot be found.
        """
        start = self._section_start()
        best = start + 1 if start >= 0 else 0
        if start < 0:
            start = 0
        for key in keys:
            found = self._find_key(key, start)
            if found < 0:
                break
            best = found + 1
            start = found
        return best

    def _section_start(self) -> int:
        import re

        if not self.prefix:
            return -1
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(_key_pattern, self.prefix)) + r"\s*\]")
        for index, line in enumerate(self.lines):
            if header.match(line):
                return index
        # Dotted-key or inline-table forms: find the deepest prefix key mentioned.
        for index, line in enumerate(self.lines):
            if re.search(_key_pattern(self.prefix[-1]), line):
                return index
        return -1

    def _find_key(self, key: str, start: int) -> int:
        import re

        pattern = re.compile(r"(^\s*|[{,.]\s*|\[\s*(?:[^\]]*\.)?\s*)" + _key_pattern(key) + r"\s*(=|\.|\]|$)")
        for index in range(start, len(self.lines)):
            if pattern.search(self.lines[index]):
                return index
        return -1


def _key_pattern(key: str) -> str:
    import re

    escaped = re.escape(key)
    return rf"(?:{escaped}|\"{escaped}\"|'{escaped}')"


def _quote_key(key: str) -> str:
    import re

    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    import json

    # A TOML quoted key may hold newlines and control characters: escape them, so that
    # every problem stays on one line.
    return json.dumps(key, ensure_ascii=False)


def _relative_path(checker: _Checker, keys: Tuple[str, ...], value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        checker.problem(keys, f"must be a non-empty path string, not {_show(value)}")
        return None
    if value.startswith("/") or ".." in value.replace("\\", "/").split("/"):
        checker.problem(keys, f"must be a path inside the repository, not {value!r}")
        return None
    return value.strip().strip("/") or "."


def _show(value: Any) -> str:
    kind = type(value).__name__
    names = {
        "str": "a string",
        "int": "an integer",
        "float": "a number",
        "bool": "a boolean",
        "list": "an array",
        "dict": "a table",
    }
    return f"{names.get(kind, kind)} ({value!r})" if not isinstance(value, (list, dict)) else names[kind]


def _string_list(checker: _Checker, key: str, value: Any) -> Optional[List[str]]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        checker.problem((key,), f"must be a non-empty array of non-empty strings, not {_show(value)}")
        return None
    return list(value)


def _choice(checker: _Checker, key: str, value: Any, choices: Sequence[str]) -> Optional[str]:
    if value not in choices:
        wanted = " or ".join(f'"{c}"' for c in choices)
        checker.problem((key,), f"must be {wanted}, not {_show(value)}")
        return None
    return str(value)


def _boolean(checker: _Checker, key: str, value: Any) -> Optional[bool]:
    if not isinstance(value, bool):
        checker.problem((key,), f"must be true or false, not {_show(value)}")
        return None
    return value


def _flag_setter(key: str) -> Callable[[_Checker, Config, Any], None]:
    """The setter of a true/false key: a boolean, or one problem naming the key."""

    def set_flag(checker: _Checker, config: Config, value: Any) -> None:
        flag = _boolean(checker, key, value)
        if flag is not None:
            setattr(config, key, flag)

    return set_flag


def _set_templates(checker: _Checker, config: Config, value: Any) -> None:
    globs = _string_list(checker, "templates", value)
    if globs is not None:
        for glob in globs:
            if glob.startswith("/") or ".." in glob.split("/"):
                checker.problem(("templates",), f"glob {glob!r} must be relative to the repository root")
                return
            problem = glob_problem(glob)
            if problem:
                checker.problem(("templates",), f"glob {glob!r} is not a glob: {problem}")
                return
        config.templates = globs


# The keys of an [images."REPO"] table: every ImageConfig field but the repository's name.
_IMAGE_KEYS = tuple(key for key in ImageConfig.__slots__ if key != "name")
CACHE_MODES = ("inline", "registry", "none")
# Build arguments are kept in the image's history and in pachhook's queue: a name like these
# says the value is a credential, which belongs in `secrets` instead.
_SECRET_ARG = r"(?i)token|passw|secret|credential|(?:^|_)(?:key|pass|auth|pat|apikey)(?:_|$)"


def _image_string(checker: _Checker, keys: Tuple[str, ...], value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value.strip() or any(ch.isspace() for ch in value):
        checker.problem(keys, f"must be a non-empty string without spaces, not {_show(value)}")
        return None
    return value


def _image_secrets(checker: _Checker, keys: Tuple[str, ...], value: Any) -> Dict[str, Tuple[str, str]]:
    import re

    secrets: Dict[str, Tuple[str, str]] = {}
    if not isinstance(value, dict):
        checker.problem(
            keys, f'must be a table of secret ids, e.g. {{ pip = {{ env = "PIP_TOKEN" }} }}, not {_show(value)}'
        )
        return secrets
    for secret_id, source in value.items():
        where = keys + (secret_id,)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", secret_id):
            checker.problem(where, "a secret id holds only letters, digits, '_', '.' and '-'")
        elif not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in ("env", "src"):
            checker.problem(where, 'must be { env = "VARIABLE" } or { src = "FILE" }')
        elif not isinstance(next(iter(source.values())), str) or not next(iter(source.values())).strip():
            checker.problem(where, "must name an environment variable or a file")
        else:
            kind, name = next(iter(source.items()))
            secrets[secret_id] = (kind, name)
    return secrets


def _set_images(checker: _Checker, config: Config, value: Any) -> None:
    import re

    if not isinstance(value, dict):
        checker.problem(("images",), f"must be a table of image repositories, not {_show(value)}")
        return
    for name, body in value.items():
        keys = ("images", name)
        if ":" in name.rsplit("/", 1)[-1] or "@" in name:
            checker.problem(keys, "name the image repository without a tag or digest")
            continue
        if not isinstance(body, dict):
            checker.problem(keys, f"must be a table with {', '.join(_IMAGE_KEYS)}, not {_show(body)}")
            continue
        image = ImageConfig(name=name)
        for key, item in body.items():
            if key == "dockerfile":
                image.dockerfile = _relative_path(checker, keys + (key,), item)
            elif key == "context":
                image.context = _relative_path(checker, keys + (key,), item)
            elif key == "build_args":
                if not isinstance(item, dict) or not all(
                    isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in item.values()
                ):
                    checker.problem(keys + (key,), "must be a table of strings (build argument values)")
                    continue
                image.build_args = {str(k): str(v) for k, v in item.items()}
                for arg in image.build_args:
                    if re.search(_SECRET_ARG, arg):
                        checker.problem(
                            keys + (key, arg),
                            "looks like a secret: build arguments stay in the image's history; "
                            f'pass it as secrets = {{ {arg.lower()} = {{ env = "{arg}" }} }} (RUN --mount=type=secret)',
                        )
            elif key in ("platform", "target", "network", "builder"):
                setattr(image, key, _image_string(checker, keys + (key,), item))
            elif key == "cache":
                if item in CACHE_MODES:
                    image.cache = item
                else:
                    checker.problem(keys + (key,), f'must be "inline", "registry" or "none", not {_show(item)}')
            elif key == "secrets":
                image.secrets = _image_secrets(checker, keys + (key,), item)
            elif key == "submodules":
                if isinstance(item, bool):
                    image.submodules = item
                else:
                    checker.problem(keys + (key,), f"must be true or false, not {_show(item)}")
            else:
                checker.problem(keys + (key,), f"unknown key (known keys: {', '.join(_IMAGE_KEYS)})")
        config.images[name] = image


def _set_branches(checker: _Checker, config: Config, value: Any) -> None:
    branches = _string_list(checker, "branches", value)
    if branches is not None:
        config.branches = [b[len("refs/heads/") :] if b.startswith("refs/heads/") else b for b in branches]


def _set_tag(checker: _Checker, config: Config, value: Any) -> None:
    tag = _choice(checker, "tag", value, TAG_FORMS)
    if tag is not None:
        config.tag = tag


def _set_worker(checker: _Checker, config: Config, value: Any) -> None:
    mode = _choice(checker, "worker", value, WORKER_MODES)
    if mode is not None:
        config.worker = mode


def _set_pachctl(checker: _Checker, config: Config, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        checker.problem(("pachctl",), f"must be the pachctl executable (a non-empty string), not {_show(value)}")
        return
    config.pachctl = value


def _set_backend(checker: _Checker, config: Config, value: Any) -> None:
    backend = _choice(checker, "backend", value, BACKENDS)
    if backend is not None:
        config.backend = backend


# Top-level arguments pachhook sets from the commit; `jsonnet_args` cannot redefine them.
_COMMIT_ARGS = ("tag", "commit", "short_commit", "branch")


def _set_jsonnet_args(checker: _Checker, config: Config, value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        checker.problem(("jsonnet_args",), "must be a table of strings (Jsonnet top-level argument values)")
        return
    for key in value:
        if key in _COMMIT_ARGS:
            checker.problem(("jsonnet_args", key), f"{key!r} is set from the commit and cannot be configured")
            return
    config.jsonnet_args = {str(k): str(v) for k, v in value.items()}


def _set_pachyderm_version(checker: _Checker, config: Config, value: Any) -> None:
    import re

    match = re.fullmatch(r"v?([0-9]+)\.([0-9]+)(\.[0-9]+)?", value.strip()) if isinstance(value, str) else None
    if match is None or int(match.group(1)) < 2:
        checker.problem(("pachyderm_version",), f'must be a Pachyderm 2.x version such as "2.9", not {_show(value)}')
        return
    config.pachyderm_version = value.strip()


def _set_verify_timeout(checker: _Checker, config: Config, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        checker.problem(("verify_timeout",), f"must be a positive number of seconds, not {_show(value)}")
        return
    config.verify_timeout = float(value)


def _set_keep_jobs(checker: _Checker, config: Config, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        checker.problem(("keep_jobs",), f"must be a whole number of jobs, 1 or more, not {_show(value)}")
        return
    config.keep_jobs = value


def _set_build_concurrency(checker: _Checker, config: Config, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        checker.problem(("build_concurrency",), f"must be a whole number of builds from 1 to 64, not {_show(value)}")
        return
    config.build_concurrency = value


def _set_environments(checker: _Checker, config: Config, value: Any) -> None:
    from pachhook.core.environments import parse_environments

    config.environments = parse_environments(checker, value)


_KEYS = {
    "environments": _set_environments,
    "templates": _set_templates,
    "images": _set_images,
    "branches": _set_branches,
    "tag": _set_tag,
    "pin_digest": _flag_setter("pin_digest"),
    "reprocess": _flag_setter("reprocess"),
    "worker": _set_worker,
    "pachctl": _set_pachctl,
    "backend": _set_backend,
    "jsonnet_args": _set_jsonnet_args,
    "plan_on_push": _flag_setter("plan_on_push"),
    "pachyderm_version": _set_pachyderm_version,
    "schema_from_cluster": _flag_setter("schema_from_cluster"),
    "verify": _flag_setter("verify"),
    "verify_timeout": _set_verify_timeout,
    "keep_jobs": _set_keep_jobs,
    "notify": _flag_setter("notify"),
    "build_concurrency": _set_build_concurrency,
}
