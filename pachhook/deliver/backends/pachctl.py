"""The `pachctl` backend of the update step: apply a spec file and read the pipeline back.

Every call is an argument list (no shell) with a bounded timeout, so a hanging pachctl
(a cluster that stopped answering, a port-forward that died) fails the job instead of
holding the worker forever. Errors carry pachctl's last stderr line, which is where it
says what went wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from pachhook.core.sanitize import one_line, strip_controls
from pachhook.deliver import toolfacts
from pachhook.deliver.backends.rawoutput import ClusterError, messages

if TYPE_CHECKING:
    from pachhook.deliver.backends.session import Session

# Seconds. `update pipeline` may wait on the cluster; `version`/`inspect` answer quickly.
DEFAULT_TIMEOUT = 300.0
QUICK_TIMEOUT = 60.0
TIMEOUT_ENV = "PACHHOOK_PACHCTL_TIMEOUT"
LAST_LINE_LIMIT = 1000  # characters of pachctl's own message kept in an error
VERSION_TOPIC = "pachctl-version"  # toolfacts.py: the client's version per executable file


class BackendError(Exception):
    """A backend call failed; str(error) is one line for the user.

    `retryable` is False when trying again cannot help without a change by the user
    (pachctl missing, a spec pachctl refuses).
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        # Messages quote pachctl, pachd and the pachctl configuration: outside text, made safe
        # here once for every caller (logged, stored in the queue, printed by status).
        super().__init__(one_line(message))
        self.retryable = retryable


@dataclass
class PipelineState:
    """What the cluster says a pipeline runs now."""

    name: str
    version: str  # pachd counts versions from 1; kept as text (2.x prints it as a string)
    image: str
    annotations: Dict[str, str] = field(default_factory=dict)
    project: str = ""
    # The spec as the user gave it (PipelineInfo.user_spec_json, pachd 2.8+), None when the
    # cluster does not record it; `effective_spec` is the spec with the cluster's defaults.
    user_spec: Optional[Dict[str, Any]] = None
    effective_spec: Optional[Dict[str, Any]] = None
    # The version's spec commit (`specCommit.id`: the global ID of the jobs the update
    # started) and its Pachyderm metadata (2.11+), for the stamp after an update.
    spec_commit: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The cluster's text, which the update step logs and stores: made safe once, here, for
        # both backends (a real image reference, version or commit SHA holds no control character).
        self.name = one_line(self.name, 300)
        self.version = one_line(self.version, 50)
        self.image = one_line(self.image, 1000)
        self.project = one_line(self.project, 300)
        self.annotations = {one_line(key, 300): one_line(value, 1000) for key, value in self.annotations.items()}


def parse_version(text: str) -> Tuple[int, int, int]:
    """`2.11.6` (or `v1.8.0`, or `1.9.0-rc1`) -> (2, 11, 6); ValueError when there is none."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"no version number in {text.strip()!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _stored_version(stored: Any) -> Optional[Tuple[int, int, int]]:
    """A version as toolfacts.py keeps it ([2, 11, 6]), None when the file held something else."""
    if isinstance(stored, list) and len(stored) == 3 and all(type(part) is int for part in stored):
        return stored[0], stored[1], stored[2]
    return None


def update_argv(
    executable: str, version: Tuple[int, int, int], spec_path: str, reprocess: bool, project: str = ""
) -> List[str]:
    """The command that applies a spec: the hyphenated form before 1.9, the verb-noun form after.

    `--project` exists from 2.5 (projects arrived then); older clients get none.
    """
    if version < (1, 9, 0):
        argv = [executable, "update-pipeline", "-f", spec_path]
    else:
        argv = [executable, "update", "pipeline", "-f", spec_path]
    if reprocess:
        argv.append("--reprocess")
    if project and version >= (2, 5, 0):
        argv += ["--project", project]
    return argv


# pachctl's words (src/server/transaction/cmds/cmds.go and util.go).
_STARTED = re.compile(r'started new transaction: "?([0-9A-Za-z-]+)"?')
_ADDED = re.compile(r"Added to transaction: ([0-9A-Za-z-]+)")


@dataclass
class Apply:
    """One spec of a commit's DAG update, in the order it is applied (upstream first)."""

    pipeline: str
    spec_path: str
    spec_json: str
    reprocess: bool = False
    project: str = ""


def _mapping(value: Any) -> Dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (pachctl output of another era)."""
    return value if isinstance(value, dict) else {}


def state_from_inspect(data: Any, name: str) -> PipelineState:
    """Read `inspect pipeline --raw` output of either era.

    2.x prints protojson: `"version": "3"` (a string) and the spec under `details`;
    1.x printed `version` as a number and `transform` at the top level. Both field
    spellings are accepted because pachctl 2.0-2.6 printed proto names.
    """
    if not isinstance(data, dict):
        raise BackendError(f"pachctl inspect pipeline {name}: unexpected output (not a JSON object)")
    details = _mapping(data.get("details"))
    transform = details.get("transform") or data.get("transform") or {}
    image = transform.get("image", "") if isinstance(transform, dict) else ""
    metadata = details.get("metadata") or data.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    pipeline = _mapping(data.get("pipeline"))
    project = _mapping(pipeline.get("project"))
    spec_commit = _mapping(data.get("specCommit", data.get("spec_commit")))
    pachyderm_metadata = _mapping(data.get("metadata"))
    return PipelineState(
        name=str(pipeline.get("name") or name),
        version=str(data.get("version", "")),
        image=str(image or ""),
        annotations=dict(annotations) if isinstance(annotations, dict) else {},
        project=str(project.get("name") or ""),
        user_spec=spec_from_json(data.get("userSpecJson", data.get("user_spec_json"))),
        effective_spec=spec_from_json(data.get("effectiveSpecJson", data.get("effective_spec_json"))),
        spec_commit=str(spec_commit.get("id") or ""),
        # 2.x: a map of strings (1.x put the spec's own metadata object here instead)
        metadata={str(key): value for key, value in pachyderm_metadata.items() if isinstance(value, str)},
    )


def spec_from_json(text: Any) -> Optional[Dict[str, Any]]:
    """A spec recorded as JSON text (`user_spec_json`), or None when absent or unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def count_json_values(text: str) -> int:
    """How many JSON values a `--raw` stream holds (pachctl prints one after another)."""
    decoder = json.JSONDecoder()
    count = 0
    index = 0
    length = len(text)
    while True:
        while index < length and text[index].isspace():
            index += 1
        if index >= length:
            return count
        _, index = decoder.raw_decode(text, index)
        count += 1


class PachctlBackend:
    """Apply specs with the `pachctl` command line the user already has configured."""

    name = "pachctl"

    def __init__(
        self,
        executable: str = "pachctl",
        timeout: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        session: Optional[Session] = None,
        cache_dir: Optional[str] = None,
    ) -> None:
        self.executable = executable
        # Where the client's version is remembered across processes (toolfacts.py).
        self.cache_dir = cache_dir
        # A private session (PACH_CONFIG and PACH_CONTEXT) when given: see session.py.
        self.session = session
        self.env = session.env if session is not None else env
        self._version: Optional[Tuple[int, int, int]] = None
        if timeout is None:
            timeout = _timeout_from_env()
        self.timeout = timeout

    # -- plumbing -------------------------------------------------------------------

    def resolve(self) -> str:
        """The pachctl path, or a BackendError that says how to get one."""
        found = shutil.which(self.executable, path=(self.env or os.environ).get("PATH"))
        if found is None:
            raise BackendError(
                f"pachctl not found (looked for {self.executable!r}): install pachctl, "
                'or set `pachctl = "/path/to/pachctl"` in the pachhook configuration',
                retryable=False,
            )
        return found

    def _run(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
        argv = [self.resolve(), *args]
        shown = " ".join([os.path.basename(self.executable), *args])
        try:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            raise BackendError(f"`{shown}` did not finish within {timeout:g}s (timed out)") from None
        except OSError as error:
            raise BackendError(
                f"cannot run pachctl ({self.executable}): {error.strerror or error}", retryable=False
            ) from None
        return completed

    @staticmethod
    def _last_line(completed: subprocess.CompletedProcess) -> str:
        for stream in (completed.stderr, completed.stdout):
            # control sequences out first: a carriage return or cursor move is no line of its own
            lines = [line.strip() for line in strip_controls(stream or "").splitlines() if line.strip()]
            if lines:
                return one_line(lines[-1], LAST_LINE_LIMIT)
        return f"exit status {completed.returncode}"

    # -- the backend interface ----------------------------------------------------------

    def version(self) -> Tuple[int, int, int]:
        """The client's version, from `pachctl version --client-only`.

        Asked once per executable file (toolfacts.py), across processes when the backend
        has a `cache_dir`: a delivery starts pachctl one time fewer; a pachctl replaced on
        disk is asked again.
        """
        if self._version is None:
            key = toolfacts.key_of(self.resolve())
            cached = toolfacts.recall(VERSION_TOPIC, key, _stored_version, self.cache_dir)
            if cached is None:
                completed = self._run(["version", "--client-only"], min(self.timeout, QUICK_TIMEOUT))
                if completed.returncode != 0:
                    raise BackendError(f"pachctl version --client-only failed: {self._last_line(completed)}")
                try:
                    cached = parse_version(completed.stdout)
                except ValueError as error:
                    raise BackendError(f"pachctl version --client-only: {error}", retryable=False) from None
                toolfacts.remember(VERSION_TOPIC, key, cached, self.cache_dir)
            self._version = cached
        return self._version

    def describe(self) -> str:
        major, minor, patch = self.version()
        return f"pachctl {major}.{minor}.{patch}"

    def update_command(self, spec_path: str, reprocess: bool, project: str = "") -> List[str]:
        return update_argv(self.executable, self.version(), spec_path, reprocess, project)

    def update(self, spec_path: str, spec_json: str, reprocess: bool, project: str = "") -> None:
        """Apply the spec file (creating the pipeline when it does not exist yet)."""
        project = project or (self.session.project if self.session is not None else "")
        argv = self.update_command(spec_path, reprocess, project)
        completed = self._run(argv[1:], self.timeout)
        if completed.returncode != 0:
            verb = " ".join(argv[1:3] if argv[1] == "update" else argv[1:2])
            raise BackendError(f"pachctl {verb} failed: {self._last_line(completed)}")
        added = _ADDED.search(completed.stdout or "")
        if added:
            # Only a transaction active in the configuration pachctl read makes it say
            # this; the update is then not applied until someone finishes that transaction.
            raise BackendError(
                f"pachctl added the update to transaction {added.group(1)} instead of applying it"
                " (a transaction is active in the pachctl configuration it used)",
                retryable=False,
            )

    # -- transactions: one commit's pipelines applied at once --------------------------

    def apply_all(self, applies: Sequence[Apply], log: Callable[[str], None] = lambda line: None) -> None:
        """Apply every spec in one Pachyderm transaction (one spec: a plain update).

        Pachyderm runs the requests of a transaction only at `finish transaction`, all of
        them or, when one fails, none (docs: prepare-data/transactions.md; pachctl
        transaction/cmds/cmds.go). On any failure the transaction is deleted and the
        error names the pipeline whose request failed.
        """
        if len(applies) == 1:
            one = applies[0]
            self.update(one.spec_path, one.spec_json, one.reprocess, one.project)
            return
        if self.version() < (1, 12, 0):
            raise BackendError(
                "updating several pipelines at once needs pachctl 1.12 or later (transactions)", retryable=False
            )
        transaction = self.start_transaction()
        log(f"transaction {transaction}: {', '.join(item.pipeline for item in applies)}")
        try:
            for item in applies:
                project = item.project or (self.session.project if self.session is not None else "")
                argv = self.update_command(item.spec_path, item.reprocess, project)
                completed = self._run(argv[1:], self.timeout)
                if completed.returncode != 0:
                    raise BackendError(f"{item.pipeline}: pachctl update pipeline failed: {self._last_line(completed)}")
                added = _ADDED.search(completed.stdout or "")
                if not added or added.group(1) != transaction:
                    raise BackendError(
                        f"{item.pipeline}: pachctl did not add the update to transaction {transaction}", retryable=False
                    )
            completed = self._run(["finish", "transaction", transaction], self.timeout)
            if completed.returncode != 0:
                raise BackendError(f"transaction {transaction} failed, nothing applied: {self._last_line(completed)}")
        except BackendError:
            self.delete_transaction(transaction)
            raise

    def start_transaction(self) -> str:
        completed = self._run(["start", "transaction"], min(self.timeout, QUICK_TIMEOUT))
        found = _STARTED.search(completed.stdout or "")
        if completed.returncode != 0 or not found:
            raise BackendError(f"pachctl start transaction failed: {self._last_line(completed)}")
        return found.group(1)

    def delete_transaction(self, transaction: str) -> None:
        """Best effort: a transaction left behind is never finished, so never applied."""
        try:
            self._run(["delete", "transaction", transaction], min(self.timeout, QUICK_TIMEOUT))
        except BackendError:
            pass

    def deployment_id(self) -> str:
        """The cluster's deployment ID, as pachctl recorded it in the private session on connect."""
        if self.session is None:
            return ""
        return str(self.session.context_data().get("cluster_deployment_id", "") or "")

    def count_datums(self, spec_path: str) -> int:
        """How many datums the spec in `spec_path` would have now; BackendError if unknown."""
        return _count_datums(self, spec_path)

    def inspect(self, name: str, project: str = "") -> Optional[PipelineState]:
        """The pipeline as the cluster has it, or None when it does not exist."""
        args = ["inspect", "pipeline", name, "--raw"]
        project = project or (self.session.project if self.session is not None else "")
        if project:
            args += ["--project", project]
        completed = self._run(args, min(self.timeout, QUICK_TIMEOUT))
        if completed.returncode != 0:
            last = self._last_line(completed)
            if "not found" in last.lower():
                return None
            raise BackendError(f"pachctl inspect pipeline {name} failed: {last}")
        try:
            data = json.loads(completed.stdout)
        except ValueError:
            raise BackendError(f"pachctl inspect pipeline {name} --raw printed no JSON") from None
        return state_from_inspect(data, name)

    def inspect_all(self, names: Sequence[str], project: str = "") -> Dict[str, Optional[PipelineState]]:
        """The live pipelines `names` of one project, by name (None: not there).

        Several are read with one `pachctl list pipeline --raw`: pachctl 2.x asks ListPipeline
        for the project's current versions with their details and prints each PipelineInfo
        as `inspect pipeline --raw` does (src/server/pps/cmds/cmds.go, listPipeline:
        `Details: true`, `Projects: [--project]` unless `--all-projects`). A pipeline that
        does not exist is simply not listed, as `inspect` says "not found". One name, or a
        client before 2.0, is read with `inspect pipeline`.
        """
        if len(names) == 1 or self.version() < (2, 0, 0):
            return {name: self.inspect(name, project) for name in names}
        args = ["list", "pipeline", "--raw"]
        project = project or (self.session.project if self.session is not None else "")
        if project:
            args += ["--project", project]
        completed = self._run(args, min(self.timeout, QUICK_TIMEOUT))
        if completed.returncode != 0:
            raise BackendError(f"pachctl list pipeline failed: {self._last_line(completed)}")
        try:
            listed = messages(completed.stdout or "")
        except ClusterError:
            raise BackendError("pachctl list pipeline --raw printed something other than JSON") from None
        found: Dict[str, Optional[PipelineState]] = dict.fromkeys(names)
        for info in listed:
            state = state_from_inspect(info, "")
            if state.name in found:
                found[state.name] = state
        return found

    def read(self, args: Sequence[str], missing_ok: bool = True) -> Optional[str]:
        """stdout of a read-only pachctl command (`inspect commit ... --raw`, `list job ...`),
        or None when pachctl says the object is not found; BackendError for anything else,
        and for "not found" too when not `missing_ok` (a write such as `edit metadata`, whose
        target must be there). Used by provenance and the stamp, through the update's session."""
        completed = self._run(list(args), min(self.timeout, QUICK_TIMEOUT))
        if completed.returncode != 0:
            last = self._last_line(completed)
            # pachd's NotFound errors: "repo P/R not found", "commit … not found", and for a
            # commit set without commits "no commits found for commitset ID"
            # (ErrCommitSetNotFound, codes.NotFound; src/server/pfs/pfs.go)
            missing = "not found" in last.lower() or "no commits found for commitset" in last.lower()
            if missing_ok and missing:
                return None
            raise BackendError(f"pachctl {' '.join(args[:2])} failed: {last}")
        return str(completed.stdout)


def _count_datums(backend: "PachctlBackend", spec_path: str) -> int:
    """`pachctl list datum -f SPEC --raw`: the datums a spec would have (cmds.go, list datum -f).

    The pipeline need not exist; its input repos must. Raises BackendError.
    """
    completed = backend._run(["list", "datum", "-f", spec_path, "--raw"], min(backend.timeout, QUICK_TIMEOUT))
    if completed.returncode != 0:
        raise BackendError(f"pachctl list datum -f failed: {backend._last_line(completed)}")
    try:
        return count_json_values(completed.stdout)
    except ValueError:
        raise BackendError("pachctl list datum -f --raw printed something other than JSON") from None


def _timeout_from_env() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT
