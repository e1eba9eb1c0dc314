"""The Pachyderm API backend of the update step (`backend = "api"`), through pachyderm-sdk.

Only this module imports pachyderm-sdk, and only when a job is applied: importing it costs
about 0.3 s and it reads PACH_CONFIG at import time. It is an optional dependency
(`pip install 'pachhook[api]'`).

The connection is the one the delivery's session names (backends/session.py): a private
copy of the chosen context (the environment's, else PACH_CONTEXT, else the active one)
without its active transaction, which `Client.from_config` would otherwise copy into every
request (pachyderm_sdk/client.py). The token travels in gRPC metadata only; pachhook never
prints or stores it.
"""

from __future__ import annotations

import collections
import json
import os
import re
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pachhook.core.sanitize import one_line
from pachhook.deliver.backends.clusterview import MetadataEdit
from pachhook.deliver.backends.pachctl import Apply, BackendError, PipelineState, _timeout_from_env, spec_from_json
from pachhook.deliver.backends.rawoutput import ClusterError

INSTALL_HINT = "pip install 'pachhook[api]'"

# grpc's fork handlers restart its event engine in a forked child, which then aborts
# ("epoll_wait error: Bad file descriptor", SIGABRT) when this process forks after an API
# call: the worker's Jsonnet child, or a subprocess with preexec_fn. pachhook never uses
# grpc in a child, so the handlers are turned off before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def config_path() -> Path:
    """Where pachctl keeps its configuration (PACH_CONFIG, else ~/.pachyderm/config.json)."""
    configured = os.environ.get("PACH_CONFIG")
    if configured:
        return Path(os.path.expanduser(configured))
    return Path.home() / ".pachyderm" / "config.json"


class ApiBackend:
    """Apply specs with CreatePipelineV2 and read them back with InspectPipeline."""

    name = "api"

    def __init__(self, config_file: Optional[Path] = None, timeout: Optional[float] = None) -> None:
        self.config_file = Path(config_file) if config_file else config_path()
        self.timeout = timeout if timeout is not None else _timeout_from_env()
        self._stub: Any = None
        self._client: Any = None
        self._channel: Any = None
        self.address = ""

    def describe(self) -> str:
        self._pps()
        return f"the Pachyderm API at {self.address}"

    def _pps(self) -> Any:
        if self._stub is not None:
            return self._stub
        # The one place these imports stay inside functions: pachyderm-sdk (and grpc, which
        # it brings) is an optional extra, costs ~0.3 s and reads PACH_CONFIG when imported,
        # so it is imported when a job is applied through the API, never before.
        try:
            import grpc
            from pachyderm_sdk import Client
            from pachyderm_sdk.api.pps.extension import ApiStub
        except ImportError:
            raise BackendError(
                f'backend "api" needs pachyderm-sdk: {INSTALL_HINT} (or set backend = "pachctl")', retryable=False
            ) from None
        if not self.config_file.is_file():
            raise BackendError(
                f"no pachctl configuration at {self.config_file}: connect with "
                "`pachctl connect ADDRESS` or set PACH_CONFIG",
                retryable=False,
            )
        try:
            client = Client.from_config(str(self.config_file))
        except TypeError:
            raise BackendError(self._unknown_keys_message(), retryable=False) from None
        except Exception as error:  # the SDK raises KeyError, ValueError, ConfigError, OSError...
            raise BackendError(
                f"pachctl configuration {self.config_file}: {type(error).__name__}: {one_line(error)}", retryable=False
            ) from None
        self.address = client.address
        self._client = client
        # The SDK's stubs take no deadline; without one a pachd that stops answering would
        # hold the worker forever, so every call goes through a channel that adds one.
        channel = grpc.intercept_channel(client._channel, _deadline_interceptor(self.timeout))
        self._channel = channel
        self._stub = ApiStub(channel)
        return self._stub

    def view(self, project: str = "") -> "ApiView":
        """Commits, jobs, datums, pipeline history and metadata through this connection."""
        return ApiView(self, project)

    def _unknown_keys_message(self) -> str:
        """Name the context keys pachyderm-sdk refuses (never their values: one is a token)."""

        from pachyderm_sdk.config import Context

        known = {item.name for item in fields(Context)}
        unknown: List[str] = []
        try:
            data = json.loads(self.config_file.read_text(encoding="utf-8"))
            v2 = data["v2"]
            context = v2["contexts"][v2["active_context"]]
            unknown = sorted(key for key in context if key not in known)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        keys = ", ".join(unknown) if unknown else "(unreadable)"
        return (
            f"pachyderm-sdk cannot read the active context of {self.config_file}: unknown keys "
            f'{keys}; upgrade pachyderm-sdk, or set backend = "pachctl"'
        )

    def update_command(self, spec_path: str, reprocess: bool) -> List[str]:
        return []

    def update(self, spec_path: str, spec_json: str, reprocess: bool) -> None:
        stub = self._pps()
        try:
            stub.create_pipeline_v2(create_pipeline_request_json=spec_json, update=True, reprocess=reprocess)
        except Exception as error:
            raise BackendError(f"CreatePipelineV2 at {self.address} failed: {_rpc_message(error)}") from None

    def deployment_id(self) -> str:
        """The cluster's deployment ID (InspectCluster), for an environment's `deployment_id`."""
        self._pps()
        try:
            return str(self._client.admin.inspect_cluster().deployment_id or "")
        except Exception as error:
            raise BackendError(f"InspectCluster at {self.address} failed: {_rpc_message(error)}") from None

    def apply_all(self, applies: Sequence[Apply], log: Callable[[str], None] = lambda line: None) -> None:
        """Every spec in one Pachyderm transaction, applied at FinishTransaction or not at all.

        The SDK sends the transaction ID as `pach-transaction` metadata on a channel it
        rebuilds when the ID changes (pachyderm_sdk/client.py, transaction_id setter), so the
        PPS stub is made again on that channel for the transaction's requests.
        """
        if len(applies) == 1:
            one = applies[0]
            self.update(one.spec_path, one.spec_json, one.reprocess)
            return
        import grpc
        from pachyderm_sdk.api.pps.extension import ApiStub

        self._pps()
        client = self._client
        try:
            transaction = client.transaction.start_transaction()
        except Exception as error:
            raise BackendError(f"StartTransaction at {self.address} failed: {_rpc_message(error)}") from None
        log(f"transaction {transaction.id}: {', '.join(item.pipeline for item in applies)}")
        stub = ApiStub(grpc.intercept_channel(client._channel, _deadline_interceptor(self.timeout)))
        try:
            for item in applies:
                try:
                    stub.create_pipeline_v2(
                        create_pipeline_request_json=item.spec_json, update=True, reprocess=item.reprocess
                    )
                except Exception as error:
                    raise BackendError(f"{item.pipeline}: CreatePipelineV2 failed: {_rpc_message(error)}") from None
            try:
                client.transaction.finish_transaction(transaction=transaction)
            except Exception as error:
                raise BackendError(
                    f"transaction {transaction.id} failed, nothing applied: {_rpc_message(error)}"
                ) from None
        except BackendError:
            try:
                client.transaction.delete_transaction(transaction=transaction)
            except Exception:
                pass  # never finished, so never applied
            raise
        finally:
            # None, not "": pachd takes the metadata key's presence as a transaction, so an
            # empty ID would send the next request into transaction "" (client.GetTransaction)
            client.transaction_id = None

    def inspect(self, name: str, project: str = "") -> Optional[PipelineState]:
        from pachyderm_sdk.api import pfs, pps

        stub = self._pps()
        pipeline = pps.Pipeline(name=name, project=pfs.Project(name=project) if project else None)
        try:
            info = stub.inspect_pipeline(pipeline=pipeline, details=True)
        except Exception as error:
            message = _rpc_message(error)
            if _code(error) == "NOT_FOUND" or "not found" in message.lower():
                return None
            raise BackendError(f"InspectPipeline {name} at {self.address} failed: {message}") from None
        details = info.details
        annotations: Dict[str, str] = {}
        image = ""
        if details is not None:
            if details.transform is not None:
                image = details.transform.image
            if details.metadata is not None:
                annotations = dict(details.metadata.annotations)
        return PipelineState(
            name=info.pipeline.name if info.pipeline else name,
            version=str(info.version),
            image=image,
            annotations=annotations,
            project=info.pipeline.project.name if info.pipeline and info.pipeline.project else "",
            user_spec=spec_from_json(getattr(info, "user_spec_json", "")),
            effective_spec=spec_from_json(getattr(info, "effective_spec_json", "")),
        )

    def inspect_all(self, names: Sequence[str], project: str = "") -> Dict[str, Optional[PipelineState]]:
        """The live pipelines `names`, by name (None: not there): one InspectPipeline each on
        the open channel, which costs no process start as a pachctl call does."""
        return {name: self.inspect(name, project) for name in names}


class ApiView:
    """The cluster view of backends/clusterview.py through pachd's gRPC services.

    The same requests pachctl 2.x makes for the matching `--raw` commands, answered with
    the messages' protojson form (betterproto `to_dict()`: camelCase, 64-bit integers as
    strings, enums by name), the shape PachctlView returns:
    - InspectPipeline (details), ListPipeline (history -1 = all versions, details):
      src/server/pps/server/api_server.go InspectPipelineInTransaction, listPipeline;
    - InspectJob (details), InspectJobSet (`list job ID`), ListJob with history -1
      (`list job -p NAME --history all`: without it pachd lists only the current
      version's jobs), ListDatum: pps.proto, src/server/pps/cmds/cmds.go;
    - InspectCommit: a 32-digit ref is a commit ID, anything else a branch (pachctl's
      ParseCommit); pfs.proto CommitInfo;
    - EditMetadata with add_key / edit_key on a CommitPicker (global ID) or a
      PipelinePicker: src/metadata/metadata.proto, src/server/metadata/server;
    - GetVersion: versionpb_v2.API, pachd's own version.
    A NOT_FOUND answer is None (or []); anything else is a ClusterError naming the RPC.
    """

    name = "api"

    def __init__(self, backend: ApiBackend, project: str = "") -> None:
        self.backend = backend
        self.project = project

    def _stubs(self) -> Any:
        from pachyderm_sdk.api import metadata, pfs, version

        stub = self.backend._pps()
        channel = self.backend._channel
        return stub, pfs.ApiStub(channel), metadata.ApiStub(channel), version.ApiStub(channel)

    def _call(self, rpc: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except BackendError as error:
            raise ClusterError(str(error)) from None
        except Exception as error:
            if _code(error) == "NOT_FOUND":
                return None
            raise ClusterError(f"{rpc} at {self.backend.address} failed: {_rpc_message(error)}") from None

    def _project(self, project: str = "") -> Any:
        """`project`, else the view's; None (pachd's `default`) when neither names one."""
        from pachyderm_sdk.api import pfs

        project = project or self.project
        return pfs.Project(name=project) if project else None

    def _pipeline(self, name: str, project: str = "") -> Any:
        from pachyderm_sdk.api import pps

        return pps.Pipeline(name=name, project=self._project(project))

    def version(self) -> Tuple[int, int, int]:
        found = self.server_version()
        if found is None:
            raise ClusterError(f"GetVersion at {self.backend.address}: pachd did not say its version")
        return found

    def server_version(self) -> Optional[Tuple[int, int, int]]:
        answer = self._call("GetVersion", lambda: self._stubs()[3].get_version())
        return (int(answer.major), int(answer.minor), int(answer.micro)) if answer is not None else None

    def pipeline(self, name: str) -> Optional[Dict[str, Any]]:
        found = self._call(
            "InspectPipeline", lambda: self._stubs()[0].inspect_pipeline(pipeline=self._pipeline(name), details=True)
        )
        return None if found is None else found.to_dict()

    def commit(self, repo: str, ref: str, project: str = "") -> Optional[Dict[str, Any]]:
        from pachyderm_sdk.api import pfs

        target = pfs.Repo(name=repo, type="user", project=self._project(project))
        if re.fullmatch(r"[0-9a-f]{32}", ref):
            commit = pfs.Commit(repo=target, id=ref)
        else:
            commit = pfs.Commit(repo=target, branch=pfs.Branch(repo=target, name=ref))
        found = self._call("InspectCommit", lambda: self._stubs()[1].inspect_commit(commit=commit))
        return None if found is None else found.to_dict()

    def job(self, pipeline: str, job_id: str, project: str = "") -> Optional[Dict[str, Any]]:
        from pachyderm_sdk.api import pps

        job = pps.Job(pipeline=self._pipeline(pipeline, project), id=job_id)
        found = self._call("InspectJob", lambda: self._stubs()[0].inspect_job(job=job, details=True))
        return None if found is None else found.to_dict()

    def _list(self, rpc: str, stream: Callable[[], Any]) -> List[Dict[str, Any]]:
        found = self._call(rpc, lambda: [item.to_dict() for item in stream()])
        return found or []

    def jobs_in_set(self, global_id: str) -> List[Dict[str, Any]]:
        from pachyderm_sdk.api import pps

        job_set = pps.JobSet(id=global_id)
        return self._list("InspectJobSet", lambda: self._stubs()[0].inspect_job_set(job_set=job_set, details=True))

    def jobs_of(self, pipeline: str, project: str = "") -> List[Dict[str, Any]]:
        chosen = self._pipeline(pipeline, project)
        return self._list("ListJob", lambda: self._stubs()[0].list_job(pipeline=chosen, history=-1))

    def datums(self, pipeline: str, job_id: str, project: str = "") -> List[Dict[str, Any]]:
        from pachyderm_sdk.api import pps

        job = pps.Job(pipeline=self._pipeline(pipeline, project), id=job_id)
        return self._list("ListDatum", lambda: self._stubs()[0].list_datum(job=job))

    def history(self, pipeline: str = "", project: str = "") -> List[Dict[str, Any]]:
        projects = [self._project(project)] if project or self.project else None
        chosen = self._pipeline(pipeline, project) if pipeline else None
        return self._list(
            "ListPipeline",
            lambda: self._stubs()[0].list_pipeline(pipeline=chosen, history=-1, details=True, projects=projects),
        )

    def output_commits(self, global_id: str, repos: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """The output commits of `repos` in commit set `global_id`, by repo: one InspectCommit
        each (an RPC on the open channel, not a process start as with pachctl)."""
        found: Dict[str, Dict[str, Any]] = {}
        for repo in repos:
            info = self.commit(repo, global_id)
            if info is not None:
                found[repo] = info
        return found

    def edit_metadata(self, kind: str, name: str, ref: str, add: Dict[str, str], edit: Dict[str, str]) -> None:
        self.edit_metadata_all([MetadataEdit(kind, name, ref, add, edit)])

    def edit_metadata_all(self, targets: Sequence[MetadataEdit]) -> None:
        from pachyderm_sdk.api import metadata, pfs, pps

        project = pfs.ProjectPicker(name=self.project or "default")
        edits = []
        for one in targets:
            if one.kind == "commit":
                repo = pfs.RepoPicker(name=pfs.RepoPickerRepoName(project=project, name=one.name, type="user"))
                commit = pfs.CommitPicker(id=pfs.CommitPickerCommitByGlobalId(repo=repo, id=one.ref))
                target: Dict[str, Any] = {"commit": commit}
            else:
                name = pps.PipelinePickerPipelineName(project=project, name=one.name)
                target = {"pipeline": pps.PipelinePicker(name=name)}
            edits += [metadata.Edit(add_key=metadata.EditAddKey(key=k, value=v), **target) for k, v in one.add.items()]
            edits += [
                metadata.Edit(edit_key=metadata.EditEditKey(key=k, value=v), **target) for k, v in one.edit.items()
            ]
        if not edits:
            return
        # One request, one transaction on pachd: every key is written or none is.
        done = self._call("EditMetadata", lambda: self._stubs()[2].edit_metadata(edits=edits))
        if done is None:
            named = ", ".join(f"{one.kind} {one.name}{'@' + one.ref if one.ref else ''}" for one in targets)
            raise ClusterError(f"EditMetadata: {named}: not found")


def _code(error: BaseException) -> str:
    cause = error if hasattr(error, "code") else error.__cause__
    try:
        return cause.code().name  # type: ignore[union-attr]
    except Exception:
        return ""


def _rpc_message(error: BaseException) -> str:
    cause = error if hasattr(error, "details") else (error.__cause__ or error)
    code = _code(error)
    try:
        details = cause.details()  # type: ignore[attr-defined]
    except Exception:
        details = str(error)
    if code == "DEADLINE_EXCEEDED":
        return "no answer (timed out)"
    if code == "UNAVAILABLE" or isinstance(error, ConnectionError):
        return f"cannot connect ({one_line(details)})"
    return one_line(f"{code.lower() + ': ' if code else ''}{details}")


def _deadline_interceptor(timeout: float) -> Any:
    """A client interceptor that gives every call (unary or streaming) a deadline of `timeout` seconds."""

    import grpc

    class _Details(
        collections.namedtuple(
            "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
        ),
        grpc.ClientCallDetails,
    ):
        pass

    def with_deadline(details):
        return _Details(
            details.method,
            timeout,
            details.metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    # Streams too (ListJob, ListDatum, ListPipeline, InspectJobSet): the deadline bounds
    # the whole stream, so a pachd that stops sending mid-list fails the read.
    class _Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            return continuation(with_deadline(details), request)

        def intercept_unary_stream(self, continuation, details, request):
            return continuation(with_deadline(details), request)

    return _Interceptor()
