"""TEST DOUBLE of pachd's gRPC services, for the API backend (`backend = "api"`).

No Pachyderm cluster can run on the test machines. This in-process server speaks the real
wire protocol with pachyderm-sdk's own message classes, so the API backend is exercised
through a real gRPC channel, real serialisation and real metadata (the auth token).

Its cluster is the one of the pachctl TEST DOUBLE (tests/doubles/pachctl, loaded as a
module): the same state directory, pipelines with their history, spec commits, jobs
started on every update in the pipeline and downstream (propagateJobs), output commits
with direct provenance, datums with `imageId`, metadata. A pachctl double given the same
PACHCTL_DOUBLE_DIR sees what the API changed, and the faults of that double's docstring
(PACHCTL_DOUBLE_JOB, _IMAGE_ID, ... as variables or files in the state directory) apply.

Every repo, commit, job and pipeline belongs to a project, as in the pachctl double: a
message naming none is the `default` project's (pfs.Repo.EnsureProject).

Services and methods, answered as pachd 2.x does (pachyderm/pachyderm, src/pps/pps.proto,
src/pfs/pfs.proto, src/metadata/metadata.proto, src/version/versionpb/version.proto):
  pps_v2.API CreatePipelineV2   the spec JSON as the next version (ALREADY_EXISTS without update)
             InspectPipeline    NAME, NAME^N / NAME~N (N versions back), `.N` refused, and
                                "pipeline %q has only %d versions, not enough to find ancestor %d"
                                (InspectPipelineInTransaction, src/server/pps/server/api_server.go)
             ListPipeline       history 0 (current) | N | -1 (all), newest first; one pipeline or all,
                                of the projects asked for (none: every project)
             InspectJob         NOT_FOUND for an unknown job
             InspectJobSet      the jobs of one global ID, whatever their version and project
             ListJob            history as ListPipeline: without it only the current version's jobs
             ListDatum          DatumInfo with imageId (2.3+)
  pfs_v2.API InspectCommit      by ID or branch head; NOT_FOUND "commit ... not found"
                                (ErrCommitNotFound.GRPCStatus, src/server/pfs/pfs.go)
  metadata.API EditMetadata     all edits in one transaction; add_key on a key that is there is
                                FAILED_PRECONDITION "edit #N: add_key target key %q already exists;
                                use edit_key instead" (src/server/metadata/server, metadata_test.go);
                                UNIMPLEMENTED before 2.10; a pipeline target needs 2.11 (pachyderm#10184)
  versionpb_v2.API GetVersion   `version` (default 2.11.6)
  transaction_v2.API StartTransaction, InspectTransaction, ListTransaction, DeleteTransaction,
             FinishTransaction  as pachd's (src/server/transaction/server/driver.go and
                                src/internal/transactionenv/env.go), stored as the pachctl double
                                stores its transactions (transactions/ID.json), so either sees them:
    - StartTransaction stores an empty transaction under a new dashless UUID.
    - A request carrying `pach-transaction` metadata joins that transaction instead of running
      (TransactionEnv.WithTransaction). The key's presence is what counts: an empty value names
      a transaction "" that does not exist (client.GetTransaction in src/internal/client). The
      request is dry-run after the transaction's earlier ones before it is appended, so one
      pachd refuses (the PACHCTL_DOUBLE_REFUSE fault) fails there and then, "error running
      request I of N: ..." (driver.appendTransaction, runTransaction); the response is empty.
    - FinishTransaction runs every request in one database transaction: all applied, with the
      transaction's ID as their commit set (their spec commits' ID, runTransaction), or, when
      one fails, none, and the transaction stays stored (finishTransaction deletes it only on
      success). The REFUSE and REFUSE_AT_FINISH faults of the pachctl double apply.
    - InspectTransaction and DeleteTransaction of an unknown ID: NOT_FOUND
      "transactions ID not found" (the collection's ErrNotFound, "<type> <key> not found").
Each request is recorded with the auth token it carried. Faults of its own: `fail` and
`hang` (a method answers UNAVAILABLE or not in time), `image_override` (the cluster keeps
another image), `applied_first` (another deliverer's spec lands just before the next
CreatePipelineV2), `version` (an older pachd).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import betterproto
import grpc
from pachyderm_sdk.api import metadata, pfs, pps
from pachyderm_sdk.api import transaction as txn
from pachyderm_sdk.api import version as versionpb
from pachyderm_sdk.api.pps import PipelineInfo

_LOADER = importlib.machinery.SourceFileLoader("pachctl_double", str(Path(__file__).with_name("pachctl")))
_SPEC = importlib.util.spec_from_loader("pachctl_double", _LOADER)
assert _SPEC is not None
cluster: Any = importlib.util.module_from_spec(_SPEC)
_LOADER.exec_module(cluster)


TRANSACTION_KEY = "pach-transaction"  # the metadata key pachyderm-sdk and pachctl send (client.go)


@dataclass
class Received:
    spec_json: str
    update: bool
    reprocess: bool
    token: Optional[str]
    transaction: Optional[str] = None  # the transaction the request joined; None: it ran directly


def _version_tuple(text: str) -> Tuple[int, int]:
    major, minor = (int(part) for part in text.split(".")[:2])
    return major, minor


@dataclass
class PpsDouble:
    state: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pachd-double-")))
    version: str = "2.11.6"  # pachd's, as GetVersion reports it
    received: List[Received] = field(default_factory=list)
    tokens: List[Optional[str]] = field(default_factory=list)
    calls: List[str] = field(default_factory=list)  # method names, in order
    fail: Optional[str] = None  # a method name that answers UNAVAILABLE
    hang: Optional[str] = None  # a method name that never answers in time
    image_override: Optional[str] = None  # the image the "cluster" keeps instead
    # Another deliverer's spec (JSON), applied just before the next CreatePipelineV2: the
    # race an update has no compare-and-swap against.
    applied_first: Optional[str] = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)  # ends a hang early

    def __post_init__(self) -> None:
        (self.state / "received").mkdir(parents=True, exist_ok=True)
        (self.state / "pipelines").mkdir(parents=True, exist_ok=True)

    # -- helpers the tests use, as `pachctl create repo` / `put file` would ----------------

    def create_repo(self, name: str, project: str = "default") -> None:
        with self.lock:
            data = cluster.load_pfs(self.state)
            data["repos"].setdefault(
                cluster.repo_key(project, name), {"type": "user", "project": project, "head": "", "commits": {}}
            )
            cluster.save_pfs(self.state, data)

    def put_file(self, repo: str, project: str = "default") -> str:
        """A new USER commit on PROJECT/REPO@master, starting a job in every pipeline (of any
        project) that reads it."""
        with self.lock:
            data = cluster.load_pfs(self.state)
            commit_id = cluster.new_id()
            cluster.add_commit(data, repo, "user", commit_id, "USER", [], project)
            cluster.save_pfs(self.state, data)
            cluster.start_jobs_reading(self.state, cluster.repo_key(project, repo), commit_id)
        return commit_id

    # -- plumbing ---------------------------------------------------------------------------

    def _fault(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls.append(method)
        self.tokens.append(dict(context.invocation_metadata()).get("authn-token"))
        if self.hang == method:
            self.released.wait(30)
        if self.fail == method:
            context.abort(grpc.StatusCode.UNAVAILABLE, "pachd is restarting")

    def _since(self, wanted: Tuple[int, int]) -> bool:
        return _version_tuple(self.version) >= wanted

    # -- pps_v2.API ---------------------------------------------------------------------------

    def create_pipeline_v2(
        self, request: pps.CreatePipelineV2Request, context: grpc.ServicerContext
    ) -> pps.CreatePipelineV2Response:
        self._fault("CreatePipelineV2", context)
        metadata_sent = dict(context.invocation_metadata())
        token = metadata_sent.get("authn-token")
        joining = metadata_sent.get(TRANSACTION_KEY)  # None: run now; any string, even "", names a transaction
        try:
            spec = json.loads(request.create_pipeline_request_json)
            name = spec["pipeline"]["name"]
        except (ValueError, KeyError, TypeError):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no pipeline `name` specified")
        project = ((spec["pipeline"].get("project") or {}).get("name")) or "default"
        with self.lock:
            self.received.append(
                Received(request.create_pipeline_request_json, request.update, request.reprocess, token, joining)
            )
            if joining is not None:
                self._append(joining, spec, project, request, context)
                return pps.CreatePipelineV2Response()
            refused = cluster.refusal(self.state, name, project=project)
            if refused:
                context.abort(grpc.StatusCode.UNKNOWN, refused)
            if cluster.pipeline_path(self.state, project, name).exists() and not request.update:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"pipeline {name} already exists")
            if self.applied_first:
                other, self.applied_first = json.loads(self.applied_first), None
                cluster.apply_spec(self.state, other, project, False, cluster.new_id(), 2)
            if self.image_override:
                spec.setdefault("transform", {})["image"] = self.image_override
            # The new version's spec commit ID is the global ID of the jobs it starts (P13).
            cluster.apply_spec(self.state, spec, project, request.reprocess, cluster.new_id(), 2)
        return pps.CreatePipelineV2Response(effective_create_pipeline_request_json=json.dumps(spec))

    # -- transaction_v2.API ---------------------------------------------------------------------

    def _transaction_path(self, ident: str, context: grpc.ServicerContext) -> Path:
        path = self.state / "transactions" / f"{ident}.json"
        if not ident or not path.exists():
            context.abort(grpc.StatusCode.NOT_FOUND, f"transactions {ident} not found")
        return path

    def _problem(self, requests: List[Dict[str, Any]], at_finish: bool) -> str:
        """Why pachd would refuse to run `requests` in order (runTransaction), "" when it would not."""
        return cluster.transaction_refusal(self.state, requests, at_finish)

    def _append(
        self, ident: str, spec: Dict[str, Any], project: str, request: Any, context: grpc.ServicerContext
    ) -> None:
        path = self._transaction_path(ident, context)
        stored = json.loads(path.read_text())
        if self.image_override:
            spec.setdefault("transform", {})["image"] = self.image_override
        item = {"spec": spec, "project": project, "reprocess": request.reprocess, "update": request.update}
        problem = self._problem(stored["requests"] + [item], at_finish=False)  # appendTransaction's dry run
        if problem:
            context.abort(grpc.StatusCode.UNKNOWN, problem)
        stored["requests"].append(item)
        path.write_text(json.dumps(stored))

    def _info(self, ident: str, stored: Dict[str, Any]) -> txn.TransactionInfo:
        return txn.TransactionInfo(
            transaction=txn.Transaction(id=ident),
            requests=[
                txn.TransactionRequest(
                    create_pipeline_v2=pps.CreatePipelineTransaction(user_json=json.dumps(item["spec"]))
                )
                for item in stored["requests"]
            ],
            responses=[txn.TransactionResponse() for _ in stored["requests"]],
            version=len(stored["requests"]),
        )

    def start_transaction(self, request: Any, context: grpc.ServicerContext) -> txn.Transaction:
        self._fault("StartTransaction", context)
        ident = cluster.new_id()  # uuid.NewWithoutDashes
        with self.lock:
            (self.state / "transactions").mkdir(exist_ok=True)
            stored = {"requests": [], "started": cluster.now()}
            (self.state / "transactions" / f"{ident}.json").write_text(json.dumps(stored))
        return txn.Transaction(id=ident)

    def inspect_transaction(
        self, request: txn.InspectTransactionRequest, context: grpc.ServicerContext
    ) -> txn.TransactionInfo:
        self._fault("InspectTransaction", context)
        ident = request.transaction.id if request.transaction else ""
        with self.lock:
            return self._info(ident, json.loads(self._transaction_path(ident, context).read_text()))

    def list_transaction(self, request: Any, context: grpc.ServicerContext) -> txn.TransactionInfos:
        self._fault("ListTransaction", context)
        with self.lock:
            return txn.TransactionInfos(
                transaction_info=[
                    self._info(path.stem, json.loads(path.read_text()))
                    for path in sorted((self.state / "transactions").glob("*.json"))
                ]
            )

    def delete_transaction(self, request: txn.DeleteTransactionRequest, context: grpc.ServicerContext) -> Any:
        from betterproto.lib.google.protobuf import Empty

        self._fault("DeleteTransaction", context)
        with self.lock:
            self._transaction_path(request.transaction.id if request.transaction else "", context).unlink()
        return Empty()

    def finish_transaction(
        self, request: txn.FinishTransactionRequest, context: grpc.ServicerContext
    ) -> txn.TransactionInfo:
        self._fault("FinishTransaction", context)
        ident = request.transaction.id if request.transaction else ""
        with self.lock:
            path = self._transaction_path(ident, context)
            stored = json.loads(path.read_text())
            problem = self._problem(stored["requests"], at_finish=True)
            if problem:
                context.abort(grpc.StatusCode.UNKNOWN, problem)  # nothing applied; the transaction stays
            for item in stored["requests"]:
                # one commit set for the whole transaction: its ID (runTransaction)
                cluster.apply_spec(self.state, item["spec"], item["project"], item["reprocess"], ident, 2)
            path.unlink()
            return self._info(ident, stored)

    # -- pps_v2.API, reading -----------------------------------------------------------------

    def inspect_pipeline(self, request: pps.InspectPipelineRequest, context: grpc.ServicerContext) -> PipelineInfo:
        self._fault("InspectPipeline", context)
        project = (request.pipeline.project.name if request.pipeline.project else "") or "default"
        name, back, problem = cluster.ancestry(request.pipeline.name)
        if problem:
            context.abort(grpc.StatusCode.UNKNOWN, problem)
        if back < 0:
            context.abort(grpc.StatusCode.UNKNOWN, "cannot inspect future pipelines")
        path = cluster.pipeline_path(self.state, project, name)
        if not path.exists():
            context.abort(grpc.StatusCode.NOT_FOUND, f"pipeline {project}/{name} not found")
        record = json.loads(path.read_text())
        wanted = record["version"] - back
        entries = [entry for entry in record["history"] if entry["version"] == wanted]
        if not entries:
            context.abort(
                grpc.StatusCode.UNKNOWN,
                f'pipeline "{project}/{name}" has only {record["version"]} versions, not enough to find ancestor {back}',
            )
        info = cluster.pipeline_info(name, entries[0], record)
        if not request.details:
            info.pop("details", None)
        return PipelineInfo().from_dict(info)

    def list_pipeline(self, request: pps.ListPipelineRequest, context: grpc.ServicerContext):
        self._fault("ListPipeline", context)
        # `projects` filters (none: every project's pipelines); a named pipeline is its own
        # project's, `default` when it names none (ListPipelineRequest, pps.proto)
        projects = {item.name for item in request.projects} or None
        named = request.pipeline if request.pipeline and request.pipeline.name else None
        if named is not None:
            wanted = [((named.project.name if named.project else "") or "default", named.name)]
        else:
            wanted = cluster.every_pipeline(self.state)
        for project, name in wanted:
            record = cluster.pipeline_record(self.state, name, project)
            if record is None:
                if named is not None:
                    context.abort(grpc.StatusCode.NOT_FOUND, f"pipeline {project}/{name} not found")
                continue
            if projects and project not in projects:
                continue
            versions = list(reversed(record["history"]))
            keep = versions if request.history < 0 else versions[: request.history + 1]
            for entry in keep:
                info = cluster.pipeline_info(name, entry, record, project)
                if not request.details:
                    info.pop("details", None)
                yield PipelineInfo().from_dict(info)

    def _job(self, job: pps.Job) -> Tuple[Optional[Dict[str, Any]], str]:
        """The job of PROJECT/PIPELINE@ID (a Pipeline without a project is the default's,
        pfs.Repo.EnsureProject) and the error when there is none."""
        pipeline = job.pipeline or pps.Pipeline()
        project = (pipeline.project.name if pipeline.project else "") or "default"
        return cluster.find_job(cluster.load_pfs(self.state), project, pipeline.name, job.id)

    def inspect_job(self, request: pps.InspectJobRequest, context: grpc.ServicerContext) -> pps.JobInfo:
        self._fault("InspectJob", context)
        found, problem = self._job(request.job)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, problem.split(": ", 1)[-1])
        return _job_info(found, request.details)

    def inspect_job_set(self, request: pps.InspectJobSetRequest, context: grpc.ServicerContext):
        self._fault("InspectJobSet", context)
        data = cluster.load_pfs(self.state)
        for job in cluster.listed_jobs(self.state, data, global_id=request.job_set.id):
            yield _job_info(job, request.details)

    def list_job(self, request: pps.ListJobRequest, context: grpc.ServicerContext):
        """ListJob: `projects` filters (none: every project); a pipeline is its project's."""
        self._fault("ListJob", context)
        data = cluster.load_pfs(self.state)
        pipeline = request.pipeline.name if request.pipeline and request.pipeline.name else None
        project = (request.pipeline.project.name if request.pipeline and request.pipeline.project else "") or "default"
        projects = [item.name for item in request.projects] or None
        for job in cluster.listed_jobs(self.state, data, pipeline, request.history, "", project, projects):
            yield _job_info(job, request.details)

    def list_datum(self, request: pps.ListDatumRequest, context: grpc.ServicerContext):
        self._fault("ListDatum", context)
        found, problem = self._job(request.job)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, problem.split(": ", 1)[-1])
        for datum in cluster.datum_infos(found, _version_tuple(self.version)):
            yield pps.DatumInfo().from_dict(datum)

    # -- pfs_v2.API, metadata.API, versionpb_v2.API --------------------------------------------

    def inspect_commit(self, request: pfs.InspectCommitRequest, context: grpc.ServicerContext) -> pfs.CommitInfo:
        self._fault("InspectCommit", context)
        commit = request.commit
        ref = commit.id or (commit.branch.name if commit.branch else "")
        project = (commit.repo.project.name if commit.repo.project else "") or "default"
        info, problem = cluster.find_commit(cluster.load_pfs(self.state), project, commit.repo.name, ref)
        if info is None:
            context.abort(grpc.StatusCode.NOT_FOUND, problem)
        return pfs.CommitInfo().from_dict(info)

    def edit_metadata(
        self, request: metadata.EditMetadataRequest, context: grpc.ServicerContext
    ) -> metadata.EditMetadataResponse:
        self._fault("EditMetadata", context)
        if not self._since((2, 10)):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown service metadata.API")
        with self.lock:
            saved = {
                path: path.read_bytes() for path in [self.state / "pfs.json", *self.state.glob("pipelines/**/*.json")]
            }
            saved = {path: body for path, body in saved.items() if path.exists()}
            problems: List[str] = []
            for index, edit in enumerate(request.edits):
                problem = self._edit(edit)
                if problem:
                    problems.append(f"edit #{index}: {problem}")
            if problems:  # one transaction: nothing written
                for path, body in saved.items():
                    path.write_bytes(body)
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "apply edits: " + "\n".join(problems))
        return metadata.EditMetadataResponse()

    def _edit(self, edit: metadata.Edit) -> str:
        target, picked_by = betterproto.which_one_of(edit, "target")
        if target == "commit":
            # CommitPicker.id: a RepoPicker (project picker and name) and the global ID
            by_id = picked_by.id
            repo_name = by_id.repo.name
            project = (repo_name.project.name if repo_name.project else "") or "default"
            kind, picked = "commit", f"{project}/{repo_name.name}@{by_id.id}"
        elif target == "pipeline" and self._since((2, 11)):
            kind, picked = "pipeline", f"{picked_by.name.project.name or 'default'}/{picked_by.name.name}"
        else:
            return "unknown target"
        operation, op = betterproto.which_one_of(edit, "op")
        if operation in ("add_key", "edit_key"):
            values = {op.key: op.value}
        elif operation == "replace":
            values = dict(op.replacement)
        else:
            return "unknown operation"
        verb = {"add_key": "add", "edit_key": "edit", "replace": "replace"}[operation]
        return cluster.apply_metadata_edit(self.state, cluster.load_pfs(self.state), kind, picked, verb, values)

    def get_version(self, request: Any, context: grpc.ServicerContext) -> versionpb.Version:
        self._fault("GetVersion", context)
        major, minor, micro = (int(part) for part in self.version.split("."))
        return versionpb.Version(major=major, minor=minor, micro=micro)


def _job_info(job: Dict[str, Any], details: bool) -> pps.JobInfo:
    """JobInfo as pachd sends it: `details` (transform, input...) only when asked for."""
    info = cluster.public_job(job)
    if not details:
        info.pop("details", None)
    return pps.JobInfo().from_dict(info)


def _handlers(double: PpsDouble) -> Dict[str, Dict[str, grpc.RpcMethodHandler]]:
    from betterproto.lib.google.protobuf import Empty

    def unary(method: Callable, request: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request.FromString, response_serializer=bytes
        )

    def stream(method: Callable, request: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_stream_rpc_method_handler(
            method, request_deserializer=request.FromString, response_serializer=bytes
        )

    return {
        "pps_v2.API": {
            "CreatePipelineV2": unary(double.create_pipeline_v2, pps.CreatePipelineV2Request),
            "InspectPipeline": unary(double.inspect_pipeline, pps.InspectPipelineRequest),
            "ListPipeline": stream(double.list_pipeline, pps.ListPipelineRequest),
            "InspectJob": unary(double.inspect_job, pps.InspectJobRequest),
            "InspectJobSet": stream(double.inspect_job_set, pps.InspectJobSetRequest),
            "ListJob": stream(double.list_job, pps.ListJobRequest),
            "ListDatum": stream(double.list_datum, pps.ListDatumRequest),
        },
        "pfs_v2.API": {"InspectCommit": unary(double.inspect_commit, pfs.InspectCommitRequest)},
        "metadata.API": {"EditMetadata": unary(double.edit_metadata, metadata.EditMetadataRequest)},
        "versionpb_v2.API": {"GetVersion": unary(double.get_version, Empty)},
        "transaction_v2.API": {
            "StartTransaction": unary(double.start_transaction, txn.StartTransactionRequest),
            "InspectTransaction": unary(double.inspect_transaction, txn.InspectTransactionRequest),
            "ListTransaction": unary(double.list_transaction, txn.ListTransactionRequest),
            "DeleteTransaction": unary(double.delete_transaction, txn.DeleteTransactionRequest),
            "FinishTransaction": unary(double.finish_transaction, txn.FinishTransactionRequest),
        },
    }


def start(double: Optional[PpsDouble] = None) -> Tuple[grpc.Server, int, PpsDouble]:
    """Serve a PpsDouble on a free loopback port; returns the server, the port and the double."""
    double = double or PpsDouble()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    for service, handlers in _handlers(double).items():
        if service == "metadata.API" and not double._since((2, 10)):
            continue  # before 2.10 pachd has no metadata service
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port, double
