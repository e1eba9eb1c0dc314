"""The rules of a Pachyderm 2.x pipeline spec that a JSON Schema cannot say.

Every rule is one function below, reached from `check`. They read the document through
`_View`, which maps both spellings of a field (`datum_tries`, `datumTries`) to the proto
name while reporting paths with the key the user wrote. Values of the wrong type are
skipped here: `pachhook.spec.schema` reports those. docs/spec-rules.md lists every rule id.
"""

from __future__ import annotations

import json
import math
import re

from pachhook.core.diagnostics import ERROR, WARNING, JsonPath, Problem, format_json_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

# Multi-word fields of the spec; the JSON (lowerCamel) spelling is derived from each.
_SNAKE_FIELDS = (
    "parallelism_spec output_branch s3_out resource_requests resource_limits sidecar_resource_limits "
    "sidecar_resource_requests datum_set_spec datum_timeout job_timeout datum_tries scheduling_spec pod_spec "
    "pod_patch spec_commit reprocess_spec maximum_expected_uptime dry_run tf_job err_cmd image_pull_secrets "
    "err_stdin accept_return_code working_dir memory_volume datum_batching mount_path env_var object_storage "
    "sql_database file_format repo_type join_on outer_join group_by empty_files propagation_spec "
    "rate_limit_spec cron_spec internal_port external_port size_bytes per_worker node_selector "
    "priority_class_name toleration_seconds"
).split()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_TO_SNAKE = {_camel(name): name for name in _SNAKE_FIELDS}

INPUT_KINDS = ("pfs", "cron", "cross", "union", "join", "group")
_LIST_KINDS = frozenset({"cross", "union", "join", "group"})

NAME_RE = re.compile(r"[a-zA-Z0-9_-]+")
MAX_PIPELINE_NAME = 51
MAX_PROJECT_NAME = 51
MAX_PROJECT_AND_PIPELINE = 58  # "<project>-<pipeline>-v99" must be a 63-character DNS label


class _View:
    """A spec mapping read by proto field name; remembers which spelling the user wrote."""

    __slots__ = ("data", "keys")

    def __init__(self, data: Dict[str, Any]) -> None:
        self.data = data
        self.keys: Dict[str, str] = {}
        for key in data:
            if isinstance(key, str):
                self.keys.setdefault(_TO_SNAKE.get(key, key), key)

    def has(self, field: str) -> bool:
        return field in self.keys

    def get(self, field: str) -> Any:
        key = self.keys.get(field)
        return None if key is None else self.data[key]

    def key(self, field: str) -> str:
        return self.keys.get(field, field)

    def text(self, field: str) -> str:
        """The field's value when it is a string, else "" (wrong types are the schema's to report)."""
        value = self.get(field)
        return value if isinstance(value, str) else ""

    def view(self, field: str) -> Optional["_View"]:
        value = self.get(field)
        return _View(value) if isinstance(value, dict) else None


class _Report:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: List[Problem] = []

    def error(self, path: JsonPath, message: str, rule: str) -> None:
        self.problems.append(Problem(tuple(path), message, ERROR, rule))

    def warn(self, path: JsonPath, message: str, rule: str) -> None:
        # --strict turns every warning into an error
        self.problems.append(Problem(tuple(path), message, ERROR if self.strict else WARNING, rule))


def check(document: Any, strict: bool = False) -> List[Problem]:
    """Check the semantic rules of one parsed, rendered spec document; never raises.

    With strict, findings that are warnings by default (untagged images, ...) are errors.
    """
    if not isinstance(document, dict):
        from pachhook.spec.schema import not_a_mapping

        return [not_a_mapping(document)]
    report = _Report(strict)
    try:
        _check_spec(_View(document), report)
    except RecursionError:
        report.error((), "the spec nests too deeply to check", "too-deep")
    except Exception as exc:  # pragma: no cover - a bug here must not become a traceback in a hook
        report.error(
            (),
            f"pachhook could not finish checking this spec ({type(exc).__name__}: {exc}); please report this",
            "internal-error",
        )
    return report.problems


def _check_spec(spec: _View, report: _Report) -> None:
    _check_pipeline(spec, report)
    _check_request_flags(spec, report)
    transform = spec.view("transform")
    if transform is not None:
        _check_transform(transform, (spec.key("transform"),), report)
    input_value = spec.get("input")
    if input_value is not None:
        path = (spec.key("input"),)
        _check_input_node(input_value, path, (), report)
        if isinstance(input_value, dict):
            _check_input_names(input_value, path, {}, report)
    _check_services(spec, report)
    _check_egress(spec, report)
    _check_nulls(spec, report)
    _check_durations(spec, report)
    for field in ("resource_requests", "resource_limits", "sidecar_resource_limits", "sidecar_resource_requests"):
        resources = spec.view(field)
        if resources is not None:
            _check_resources(resources, (spec.key(field),), report)
    _check_pod_json(spec, report)
    metadata = spec.view("metadata")
    if metadata is not None:
        _check_metadata(metadata, (spec.key("metadata"),), report)
    tolerations = spec.get("tolerations")
    if isinstance(tolerations, list):
        for index, item in enumerate(tolerations):
            if isinstance(item, dict):
                _check_toleration(_View(item), (spec.key("tolerations"), index), report)
    reprocess = spec.get("reprocess_spec")
    if isinstance(reprocess, str) and reprocess not in ("", "until_success", "every_job"):
        report.error(
            (spec.key("reprocess_spec"),),
            f'reprocess_spec must be "until_success" or "every_job", got {json.dumps(reprocess)}',
            "reprocess-spec",
        )
    branch = spec.text("output_branch")
    if branch:
        _check_plain_name("output branch", branch, (spec.key("output_branch"),), report, "branch-name")


# -- pipeline and names --------------------------------------------------------------------


def _check_pipeline(spec: _View, report: _Report) -> None:
    pipeline_value = spec.get("pipeline")
    if pipeline_value is not None and not isinstance(pipeline_value, dict):
        return  # the schema reports the type
    pipeline = _View(pipeline_value) if isinstance(pipeline_value, dict) else None
    name_value = pipeline.get("name") if pipeline else None
    if name_value is not None and not isinstance(name_value, str):
        return
    if not name_value:
        where = (
            ("pipeline", pipeline.key("name"))
            if pipeline and pipeline.has("name")
            else (("pipeline",) if spec.has("pipeline") else ())
        )
        report.error(where, "no pipeline name specified: set pipeline.name", "pipeline-name")
        return
    name_path = (spec.key("pipeline"), pipeline.key("name"))  # type: ignore[union-attr]
    problem = name_problem("pipeline", name_value, MAX_PIPELINE_NAME)
    if problem:
        report.error(name_path, problem, "pipeline-name")
    project = pipeline.view("project")  # type: ignore[union-attr]
    project_name = project.text("name") if project else ""
    if project and project_name and project_name != "default":
        project_path = name_path[:1] + (pipeline.key("project"), project.key("name"))  # type: ignore[union-attr]
        problem = name_problem("project", project_name, MAX_PROJECT_NAME)
        if problem:
            report.error(project_path, problem, "project-name")
    together = len(project_name or "default") + len(name_value)
    if together > MAX_PROJECT_AND_PIPELINE and len(name_value) <= MAX_PIPELINE_NAME:
        report.error(
            name_path,
            f"project '{project_name or 'default'}' and pipeline '{name_value}' are {together} "
            f"characters together; Pachyderm allows at most {MAX_PROJECT_AND_PIPELINE} "
            "(the worker name <project>-<pipeline>-v99 must fit in 63)",
            "pipeline-name",
        )


def name_problem(kind: str, name: str, limit: Optional[int] = None, first_alnum: bool = True) -> Optional[str]:
    """Why `name` is not a valid Pachyderm name of this kind, or None."""
    if NAME_RE.fullmatch(name) is None:
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-"))})
        shown = ", ".join(repr(c) for c in bad[:5])
        return f"{kind} name {json.dumps(name)} may only use letters, digits, '_' and '-' (found {shown})"
    if first_alnum and not name[0].isalnum():
        return f"{kind} name {json.dumps(name)} must start with a letter or digit"
    if limit is not None and len(name) > limit:
        return f"{kind} name {json.dumps(name)} is {len(name)} characters long; Pachyderm allows at most {limit}"
    return None


def _check_plain_name(kind: str, name: str, path: JsonPath, report: _Report, rule: str) -> None:
    problem = name_problem(kind, name, first_alnum=False)
    if problem:
        report.error(path, problem, rule)


def _check_request_flags(spec: _View, report: _Report) -> None:
    if spec.has("dry_run"):
        key = spec.key("dry_run")
        report.error(
            (key,),
            f"'{key}' in a spec is read by pachctl as 'reprocess', not as a dry run; delete it "
            "(use pachctl's --dry-run flag instead)",
            "dry-run",
        )
    if spec.get("tf_job") is not None:
        key = spec.key("tf_job")
        report.error(
            (key,), f"'{key}' is refused by pachd (embedding TFJobs in pipelines is not supported); delete it", "tf-job"
        )


# -- transform and image -------------------------------------------------------------------


def _check_transform(transform: _View, path: JsonPath, report: _Report) -> None:
    image = transform.get("image")
    if isinstance(image, str) and image:
        _check_image(image, path + (transform.key("image"),), report)
    secrets = transform.get("secrets")
    if isinstance(secrets, list):
        for index, item in enumerate(secrets):
            if not isinstance(item, dict):
                continue
            secret = _View(item)
            where = path + (transform.key("secrets"), index)
            if not secret.text("name"):
                report.error(where, "secret needs a 'name': the Kubernetes secret to read", "secret")
            env_var = secret.text("env_var")
            if env_var and not secret.text("key"):
                report.error(
                    where,
                    f"secret sets env_var '{env_var}' but no 'key'; add the key of the "
                    "Kubernetes secret whose value goes into it",
                    "secret",
                )


_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = re.compile(_ALNUM + r"(?:(?:[._]|__|-+)" + _ALNUM + r")*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    r"(?:" + _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*|\[[0-9a-fA-F:]+\])"
    r"(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


def image_reference_problem(image: str) -> Optional[str]:
    """Why `image` is not a Docker image reference (registry/path:tag@digest), or None."""
    if any(c.isspace() for c in image):
        return "it contains whitespace"
    name, at, digest = image.partition("@")
    if at:
        if not _DIGEST.fullmatch(digest):
            return f"digest '{digest}' is not of the form algorithm:hex (e.g. sha256:<64 hex digits>)"
        if digest.startswith("sha256:") and len(digest) != len("sha256:") + 64:
            return "a sha256 digest has exactly 64 hex digits"
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            return (
                f"tag '{tag}' may only use letters, digits, '_', '.' and '-', must not start with '.' or '-', "
                "and has at most 128 characters"
            )
    if not name:
        return "the repository name is empty"
    if len(name) > 255:
        return "the repository name is longer than 255 characters"
    first, sep, rest = name.partition("/")
    components = name.split("/")
    if sep and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        if not _DOMAIN.fullmatch(first):
            return f"registry host '{first}' is not a valid host[:port]"
        components = rest.split("/")
    for component in components:
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if component.lower() != component and _PATH_COMPONENT.fullmatch(component.lower()):
            return f"repository name must be lowercase ('{component}')"
        return f"path component '{component}' must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
    return None


def _check_image(image: str, path: JsonPath, report: _Report) -> None:
    problem = image_reference_problem(image)
    if problem:
        # pachctl and pachd accept any string here; the failure shows only when Kubernetes pulls.
        report.warn(path, f"image {json.dumps(image)} is not a valid image reference: {problem}", "image-reference")
        return
    name = image.partition("@")[0]
    if "@" in image:
        return  # pinned by digest
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = name[colon + 1 :] if colon > slash else ""
    if not tag:
        report.warn(
            path,
            f"image {json.dumps(image)} has no tag, so it means ':latest' and each worker may pull "
            "different code; pin a tag (pachhook templates use ':{{ tag }}')",
            "image-tag",
        )
    elif tag == "latest":
        report.warn(
            path,
            f"image {json.dumps(image)} uses ':latest', so each worker may pull different code; "
            "pin a tag (pachhook templates use ':{{ tag }}')",
            "image-tag",
        )


# -- inputs --------------------------------------------------------------------------------


def _set_kinds(node: _View) -> List[str]:
    kinds = []
    for kind in INPUT_KINDS:
        value = node.get(kind)
        if value is None:
            continue
        if kind in _LIST_KINDS:
            if isinstance(value, list) and value:  # protojson leaves an empty list unset
                kinds.append(kind)
        elif isinstance(value, dict):
            kinds.append(kind)
    return kinds


def _check_input_node(value: Any, path: JsonPath, ancestors: Tuple[str, ...], report: _Report) -> None:
    if not isinstance(value, dict):
        return
    node = _View(value)
    kinds = _set_kinds(node)
    if not kinds:
        empty = [node.key(k) for k in _LIST_KINDS if isinstance(node.get(k), list) and not node.get(k)]
        extra = f" ('{empty[0]}' is an empty list, which counts as unset)" if empty else ""
        report.error(
            path,
            f"'{format_json_path(path)}' sets no input{extra}; give exactly one of "
            "pfs, cron, cross, union, join or group",
            "input-kind",
        )
    elif len(kinds) > 1:
        shown = " and ".join(f"'{node.key(k)}'" for k in kinds)
        report.error(
            path,
            f"'{format_json_path(path)}' sets {shown}; an input node holds exactly one kind: "
            "wrap them in a 'cross' or 'union' list",
            "input-kind",
        )
    for kind in kinds:
        child_path = path + (node.key(kind),)
        if kind == "pfs":
            _check_pfs(_View(node.get(kind)), child_path, ancestors, report)
        elif kind == "cron":
            _check_cron_input(_View(node.get(kind)), child_path, report)
        else:
            for index, child in enumerate(node.get(kind)):
                _check_input_node(child, child_path + (index,), ancestors + (kind,), report)


def _check_pfs(pfs: _View, path: JsonPath, ancestors: Tuple[str, ...], report: _Report) -> None:
    repo = pfs.text("repo")
    s3 = pfs.get("s3") is True
    if not repo:
        report.error(path, "pfs input needs a 'repo': the repository to read", "pfs-input")
    else:
        _check_plain_name("repo", repo, path + (pfs.key("repo"),), report, "repo-name")
    glob = pfs.get("glob")
    if not (isinstance(glob, str) and glob) and not (glob is not None and not isinstance(glob, str)):
        label = f" from repo '{repo}'" if repo else ""
        if s3:
            # pachd requires the glob "/" of an s3 input; it does not supply it
            report.error(path, f"s3 input{label} needs 'glob': \"/\" (it presents the whole repo)", "s3-input")
        else:
            report.error(
                path,
                f'pfs input{label} needs a \'glob\', such as "/" (one datum) or "/*" (one datum per top-level file)',
                "pfs-input",
            )
    if s3:
        if isinstance(glob, str) and glob and clean_glob(glob) != "/":
            report.error(
                path + (pfs.key("glob"),),
                f'an s3 input presents the whole repo, so its glob must be "/", got {json.dumps(glob)}',
                "s3-input",
            )
        for field in ("lazy", "empty_files"):
            if pfs.get(field) is True:
                report.error(
                    path + (pfs.key(field),), f"an s3 input cannot set '{pfs.key(field)}'; delete it", "s3-input"
                )
        inside = [kind for kind in ancestors if kind in ("join", "group", "union")]
        if inside:
            report.error(
                path + (pfs.key("s3"),),
                f"s3 inputs are not supported inside a '{inside[-1]}'; "
                "cross it with the other inputs instead, or drop 's3'",
                "s3-input",
            )
    commit = pfs.text("commit")
    if commit:
        report.error(
            path + (pfs.key("commit"),),
            "a pipeline input cannot come from a fixed commit in Pachyderm 2.x; use 'branch'",
            "pfs-input",
        )
    branch = pfs.text("branch")
    if branch:
        _check_plain_name("branch", branch, path + (pfs.key("branch"),), report, "branch-name")
    _check_input_project(pfs, path, report)


def clean_glob(glob: str) -> str:
    """The glob as pachd stores it (Go's path.Clean of "/" + glob): "//" and "/./" are "/"."""
    import posixpath

    return posixpath.normpath(re.sub("/+", "/", "/" + glob))


def _check_input_project(node: _View, path: JsonPath, report: _Report) -> None:
    project = node.text("project")
    if project and project != "default":
        problem = name_problem("project", project, MAX_PROJECT_NAME)
        if problem:
            report.error(path + (node.key("project"),), problem, "project-name")


def _check_cron_input(cron: _View, path: JsonPath, report: _Report) -> None:
    if not cron.text("name"):
        report.error(path, "cron input needs a 'name'", "cron-input")
    spec = cron.get("spec")
    if spec is None or isinstance(spec, str):
        problem = cron_spec_problem(spec or "")
        if problem:
            where = path + (cron.key("spec"),) if cron.has("spec") else path
            report.error(where, problem, "cron-spec")
    repo = cron.text("repo")
    if repo:
        _check_plain_name("repo", repo, path + (cron.key("repo"),), report, "repo-name")
    start = cron.text("start")
    problem = timestamp_problem(start) if start else None
    if problem:
        report.error(path + (cron.key("start"),), f"cron start {problem}; pachctl refuses it", "timestamp")
    _check_input_project(cron, path, report)


def _input_name(node: _View) -> Tuple[Optional[str], Optional[_View], str]:
    """(name, leaf, kind) of a pfs or cron node: a pfs name defaults to its repo."""
    for kind in ("pfs", "cron"):
        leaf = node.view(kind)
        if leaf is not None:
            name = leaf.text("name") or (leaf.text("repo") if kind == "pfs" else "")
            return name or None, leaf, kind
    return None, None, ""


def _check_input_names(value: Dict[str, Any], path: JsonPath, seen: Dict[str, JsonPath], report: _Report) -> None:
    """pachd's ValidateNames: names unique in the whole tree, except across alternatives of a union."""
    node = _View(value)
    kinds = _set_kinds(node)
    if not kinds:
        return
    kind = kinds[0]  # pachd looks at the first kind set; the input-kind rule reports the rest
    if kind in ("pfs", "cron"):
        name, leaf, _ = _input_name(node)
        if name is None or leaf is None:
            return
        leaf_path = path + (node.key(kind),)
        where = leaf_path + (
            (leaf.key("name"),) if leaf.text("name") else ((leaf.key("repo"),) if kind == "pfs" else ())
        )
        if name in ("out", ".env"):
            report.error(
                where,
                f"input name '{name}' is reserved (/pfs/{name} belongs to Pachyderm); set another 'name' on this input",
                "input-name",
            )
        elif name in seen:
            report.error(
                where,
                f"input name '{name}' is already used by {format_json_path(seen[name])}; "
                "give one of them a distinct 'name'",
                "input-name",
            )
        else:
            seen[name] = leaf_path
        return
    children = node.get(kind)
    child_base = path + (node.key(kind),)
    if kind == "union":
        merged: Dict[str, JsonPath] = {}
        for index, child in enumerate(children):
            if isinstance(child, dict):
                branch = dict(seen)
                _check_input_names(child, child_base + (index,), branch, report)
                for name, where in branch.items():
                    merged.setdefault(name, where)
        seen.update(merged)
        return
    for index, child in enumerate(children):
        if isinstance(child, dict):
            _check_input_names(child, child_base + (index,), seen, report)


# -- cron specs (robfig/cron v1 ParseStandard, plus Pachyderm's @never) --------------------

_CRON_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}),
    ("day of week", 0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
)
_DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@never"})
_GO_DURATION = re.compile(r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+|[-+]?0")


def cron_spec_problem(spec: str) -> Optional[str]:
    """Why pachd would refuse this cron spec, or None."""
    if not spec:
        return 'cron input needs a \'spec\', such as "@every 1h" or "*/10 * * * *"'
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            return None
        if spec.startswith("@every "):
            duration = spec[len("@every ") :]
            if _GO_DURATION.fullmatch(duration):
                return None
            return (
                f"cron spec {json.dumps(spec)}: '{duration}' is not a Go duration; write e.g. "
                '"@every 90s" or "@every 1h30m"'
            )
        return (
            f"cron spec {json.dumps(spec)} is not a known descriptor; use @every <duration>, @yearly, "
            "@annually, @monthly, @weekly, @daily, @midnight, @hourly or @never"
        )
    fields = spec.split()
    if len(fields) != 5:
        return (
            f"cron spec {json.dumps(spec)} has {len(fields)} fields; it needs exactly 5 "
            "(minute hour day-of-month month day-of-week) or a descriptor such as @hourly"
        )
    for text, (label, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in text.split(","):
            problem = _cron_range_problem(part, low, high, names)
            if problem:
                return f"cron spec {json.dumps(spec)}: {label} field '{text}': {problem}"
    return None


def _cron_range_problem(expr: str, low: int, high: int, names: Optional[Dict[str, int]]) -> Optional[str]:
    range_and_step = expr.split("/")
    if len(range_and_step) > 2:
        return "too many slashes"
    bounds = range_and_step[0].split("-")
    if bounds[0] in ("*", "?"):
        start, end = low, high  # robfig ignores anything after "*-"
    else:
        if len(bounds) > 2:
            return "too many hyphens"
        values = []
        for bound in bounds:
            number = _cron_number(bound, names)
            if isinstance(number, str):
                return number
            values.append(number)
        start = values[0]
        end = values[1] if len(values) == 2 else start
    if len(range_and_step) == 2:
        step = _cron_number(range_and_step[1], None)
        if isinstance(step, str):
            return step
        if step == 0:
            return "the step must be a positive number"
        if len(bounds) == 1 and bounds[0] not in ("*", "?"):
            end = high  # "N/step" means "N-max/step"
    if start < low:
        return f"{start} is below the minimum {low}"
    if end > high:
        return f"{end} is above the maximum {high}"
    if start > end:
        return f"the range starts ({start}) after it ends ({end})"
    return None


def _cron_number(text: str, names: Optional[Dict[str, int]]) -> Union[int, str]:
    """An int, or a message saying why text is not one."""
    if names is not None and text.lower() in names:
        return names[text.lower()]
    if re.fullmatch(r"\+?[0-9]+", text, re.ASCII):
        return int(text)
    if re.fullmatch(r"-[0-9]+", text):
        return f"negative number {text} not allowed"
    return f"'{text}' is not a number" + (" or a name" if names else "")


# -- services, spouts, outputs ---------------------------------------------------------------

_SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")


def _check_services(spec: _View, report: _Report) -> None:
    service = spec.view("service")
    spout = spec.view("spout")
    spout_service = spout.view("service") if spout else None
    if service is not None:
        _check_service_type(service, (spec.key("service"),), report)
        parallelism = spec.get("parallelism_spec")
        if isinstance(parallelism, dict):
            constant = _View(parallelism).get("constant")
            number = _as_int(constant) if constant is not None else 0
            if number is not None and number != 1:
                shown = str(number) if abs(number) < 10**30 else "a huge number"
                where = (spec.key("parallelism_spec"),) + (
                    (_View(parallelism).key("constant"),) if constant is not None else ()
                )
                report.error(
                    where,
                    f"a service runs with exactly one worker: set parallelism_spec.constant to 1 "
                    f"or delete parallelism_spec (got {shown})",
                    "service",
                )
    if spout_service is not None:
        _check_service_type(spout_service, (spec.key("spout"), spout.key("service")), report)  # type: ignore
    if spout is not None and service is not None:
        # pachd takes both, but the workers of such a pipeline never start
        report.error(
            (spec.key("service"),),
            "a pipeline is a spout or a service, not both: pachd accepts it but its workers never start;"
            " delete 'service' (a spout that serves sets spout.service)",
            "spout",
        )
    if spout is not None and spout_service is None and spec.get("input") is not None:
        report.error(
            (spec.key("input"),),
            "a spout without a service takes no input; delete 'input' (or add spout.service)",
            "spout",
        )
    if spec.get("s3_out") is True and (service is not None or spout is not None):
        which = "service" if service is not None else "spout"
        report.error((spec.key("s3_out"),), f"s3_out cannot be used with a {which}; delete one of them", "s3-out")
    if spec.get("autoscaling") is True and spout is not None:
        report.error((spec.key("autoscaling"),), "a spout cannot autoscale; delete 'autoscaling'", "autoscaling")


def _check_egress(spec: _View, report: _Report) -> None:
    egress = spec.view("egress")
    sql = egress.view("sql_database") if egress is not None else None
    if egress is None or sql is None:
        return
    path = (spec.key("egress"), egress.key("sql_database"))
    secret = sql.view("secret")
    # pachd's ValidateSQLDatabaseEgress: the password comes from a Kubernetes secret
    if secret is None:
        report.error(
            path,
            "SQL egress needs a 'secret' with the 'name' and 'key' of the Kubernetes secret"
            " holding the database password",
            "egress",
        )
        return
    for field, what in (("name", "the Kubernetes secret"), ("key", "the key in that secret")):
        if not secret.text(field):
            report.error(
                path + (sql.key("secret"),),
                f"SQL egress secret needs a '{field}': {what} holding the database password",
                "egress",
            )


# Fields whose null pachctl or pachd refuses though protojson reads null as "unset".
_NULL_WHY = {
    "transform": "pachd merges the spec over its defaults and a null deletes the default transform"
    " ('pipeline must specify a transform'): delete the line or give the transform",
    "update": "pachctl reads it as a true/false flag: delete it or write true or false",
    "reprocess": "pachctl reads it as a true/false flag: delete it or write true or false",
}


def _check_nulls(spec: _View, report: _Report) -> None:
    for field, why in _NULL_WHY.items():
        if spec.has(field) and spec.get(field) is None:
            report.error((spec.key(field),), f"'{spec.key(field)}' is null, which fails: {why}", "null")
    pipeline = spec.view("pipeline")
    if pipeline is not None and pipeline.has("project") and pipeline.get("project") is None:
        report.error(
            (spec.key("pipeline"), pipeline.key("project")),
            "'project' is null, which fails: pachctl fills in pipeline.project.name and cannot inside a null;"
            ' delete it (the default project is used) or write {"name": "..."}',
            "null",
        )


MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration: about 10,000 years
_DURATION_TEXT = re.compile(r"[+-]?((0|[1-9][0-9]*)(\.[0-9]{0,9})?|\.[0-9]{0,9})s")


def _check_durations(spec: _View, report: _Report) -> None:
    for field in ("datum_timeout", "job_timeout", "maximum_expected_uptime"):
        value = spec.get(field)
        if not isinstance(value, str) or not _DURATION_TEXT.fullmatch(value):
            continue  # the schema reports other forms
        whole = value.lstrip("+-").split(".")[0].rstrip("s") or "0"
        if len(whole) > 12 or int(whole) > MAX_DURATION_SECONDS:
            report.error(
                (spec.key(field),),
                f"{spec.key(field)} {json.dumps(value)} is beyond the range of a protobuf duration"
                f" ({MAX_DURATION_SECONDS} seconds, about 10,000 years); pachctl refuses it",
                "duration",
            )


def timestamp_problem(value: str) -> Optional[str]:
    """Why protojson refuses this RFC 3339 timestamp (an impossible date or time), or None."""
    import datetime  # only for a cron input that sets `start`

    match = re.match(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})", value)
    if match is None:
        return None  # the schema reports the form
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        datetime.datetime(year, month, day, hour, minute, second)
    except ValueError as error:
        return f"{json.dumps(value)} is not a real date and time ({error})"
    return None


def _check_service_type(service: _View, path: JsonPath, report: _Report) -> None:
    kind = service.get("type")
    if isinstance(kind, str) and kind and kind not in _SERVICE_TYPES:
        report.error(
            path + (service.key("type"),),
            f"service type must be one of {', '.join(_SERVICE_TYPES)}, got {json.dumps(kind)}",
            "service",
        )


def _as_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= 40 and re.fullmatch(r"-?[0-9]+(\.0+)?", value):
        return int(value.split(".")[0])  # protojson reads "3.0" as 3
    return None


# -- resources -----------------------------------------------------------------------------

_QUANTITY = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_BYTE_UNITS = {
    "k": ("k", "Ki"),
    "kb": ("k", "Ki"),
    "kib": ("Ki", None),
    "m": ("M", "Mi"),
    "mb": ("M", "Mi"),
    "mib": ("Mi", None),
    "g": ("G", "Gi"),
    "gb": ("G", "Gi"),
    "gib": ("Gi", None),
    "t": ("T", "Ti"),
    "tb": ("T", "Ti"),
    "tib": ("Ti", None),
    "p": ("P", "Pi"),
    "pb": ("P", "Pi"),
    "pib": ("Pi", None),
}


def quantity_problem(value: str) -> Optional[str]:
    """Why value is not a Kubernetes resource quantity, or None."""
    if _QUANTITY.fullmatch(value):
        return None
    return "not a Kubernetes quantity"


def _quantity_suggestion(value: str) -> str:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*", value)
    if m:
        units = _BYTE_UNITS.get(m.group(2).lower())
        if units:
            first, second = units
            if second:
                return f'; write "{m.group(1)}{first}" (powers of 1000) or "{m.group(1)}{second}" (powers of 1024)'
            return f'; write "{m.group(1)}{first}"'
    return '; write a number with an optional suffix such as "512Mi", "2Gi" or "500M"'


def _check_resources(resources: _View, path: JsonPath, report: _Report) -> None:
    for field in ("memory", "disk"):
        value = resources.get(field)
        if not isinstance(value, str) or value == "":
            continue
        where = path + (resources.key(field),)
        if _QUANTITY.fullmatch(value) is None:
            report.error(
                where,
                f"{field} {json.dumps(value)} is not a Kubernetes quantity, and pachd silently "
                f"drops it{_quantity_suggestion(value)}",
                "resource-quantity",
            )
        elif value.startswith("-"):
            report.error(
                where,
                f"{field} {json.dumps(value)} is negative; Kubernetes refuses negative resources",
                "resource-quantity",
            )
        elif value.endswith("m"):
            report.warn(
                where,
                f"{field} {json.dumps(value)} means {value[:-1]} thousandths of a byte ('m' is "
                f'milli); did you mean "{value[:-1]}Mi" or "{value[:-1]}M"?',
                "resource-quantity",
            )
    cpu = resources.get("cpu")
    number: Optional[float] = None
    try:
        if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
            number = float(cpu)
        elif isinstance(cpu, str) and len(cpu) <= 64:
            number = float(cpu)
    except (ValueError, OverflowError):
        number = math.inf if isinstance(cpu, int) else None  # other strings: the schema reports them
    if number is not None and (math.isnan(number) or math.isinf(number) or number < 0):
        shown = json.dumps(cpu) if isinstance(cpu, str) else ("a huge number" if math.isinf(number) else repr(cpu))
        report.error(
            path + (resources.key("cpu"),),
            f"cpu must be a non-negative, finite number of cores, got {shown}; pachd silently drops it",
            "resource-quantity",
        )


# -- pod_spec / pod_patch ------------------------------------------------------------------


def _check_pod_json(spec: _View, report: _Report) -> None:
    for field, expected, word in (
        ("pod_spec", dict, "a JSON object (a partial Kubernetes PodSpec)"),
        ("pod_patch", list, "a JSON array (a JSON Patch of the PodSpec)"),
    ):
        text = spec.get(field)
        if not isinstance(text, str) or not text.strip():
            continue
        where = (spec.key(field),)
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            report.error(where, f"{spec.key(field)} must hold valid JSON: {exc}", "pod-json")
            continue
        if not isinstance(parsed, expected):
            report.error(where, f"{spec.key(field)} must hold {word}", "pod-json")


# -- metadata and tolerations --------------------------------------------------------------

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def label_key_problem(key: str) -> Optional[str]:
    """Why key is not a Kubernetes label/annotation key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return f"prefix '{prefix}' must be a lowercase DNS subdomain (e.g. example.com) of at most 253 characters"
    if not name:
        return "the name part is empty"
    if len(name) > 63:
        return "the name part is longer than 63 characters"
    if not _LABEL_NAME.fullmatch(name):
        return "the name part must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


def _check_metadata(metadata: _View, path: JsonPath, report: _Report) -> None:
    for field in ("labels", "annotations"):
        mapping = metadata.get(field)
        if not isinstance(mapping, dict):
            continue
        base = path + (metadata.key(field),)
        for key, value in mapping.items():
            if key == "$schema" or not isinstance(key, str):
                continue
            # Kubernetes lower-cases an annotation key before it checks it (label keys stay
            # case-sensitive), and pachd passes keys on as written
            problem = label_key_problem(key.lower() if field == "annotations" else key)
            if problem:
                report.error(
                    base + (key,),
                    f"{field[:-1]} key {json.dumps(key)} is not valid in Kubernetes: {problem}",
                    "metadata",
                )
            if (
                field == "labels"
                and isinstance(value, str)
                and value
                and (len(value) > 63 or not _LABEL_NAME.fullmatch(value))
            ):
                report.error(
                    base + (key,),
                    f"label value {json.dumps(value)} is not valid in Kubernetes: at most "
                    "63 letters, digits, '-', '_' or '.', starting and ending with a letter "
                    "or digit",
                    "metadata",
                )


_OPERATORS = {"EXISTS": "EXISTS", 1: "EXISTS", "EQUAL": "EQUAL", 2: "EQUAL"}


def _check_toleration(toleration: _View, path: JsonPath, report: _Report) -> None:
    operator = toleration.get("operator")
    if isinstance(operator, float) and operator.is_integer():
        operator = int(operator)
    if isinstance(operator, bool) or not isinstance(operator, (str, int, type(None))):
        return
    kind = _OPERATORS.get(operator) if operator is not None else None
    if kind is None:
        if operator is None or operator in ("EMPTY", 0):
            report.error(path, 'toleration needs an operator: "EXISTS" or "EQUAL"', "toleration")
        return  # other values: the schema reports them
    if kind == "EXISTS" and toleration.text("value"):
        report.error(
            path + (toleration.key("value"),),
            "a toleration with operator EXISTS matches any value; delete 'value' or use EQUAL",
            "toleration",
        )
    if kind == "EQUAL" and not toleration.text("key"):
        report.error(path, "a toleration with operator EQUAL needs a 'key'", "toleration")


def rule_ids() -> Iterator[str]:
    """Every rule id this module can report (docs/spec-rules.md documents each)."""
    yield from (
        "not-a-mapping",
        "too-deep",
        "internal-error",
        "pipeline-name",
        "project-name",
        "repo-name",
        "branch-name",
        "dry-run",
        "tf-job",
        "image-reference",
        "image-tag",
        "secret",
        "input-kind",
        "pfs-input",
        "s3-input",
        "cron-input",
        "cron-spec",
        "input-name",
        "service",
        "spout",
        "s3-out",
        "autoscaling",
        "resource-quantity",
        "pod-json",
        "metadata",
        "toleration",
        "reprocess-spec",
        "egress",
        "null",
        "duration",
        "timestamp",
    )
