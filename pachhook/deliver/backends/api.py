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
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from pachhook.core.sanitize import one_line
from pachhook.deliver.backends.pachctl import Apply, BackendError, PipelineState, _timeout_from_env, spec_from_json

INSTALL_HINT = "pip install 'pachhook[api]'"


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
        self._stub = ApiStub(channel)
        return self._stub

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
            client.transaction_id = ""

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
    """A unary-unary client interceptor that gives every call a deadline of `timeout` seconds."""

    import grpc

    class _Details(
        collections.namedtuple(
            "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
        ),
        grpc.ClientCallDetails,
    ):
        pass

    class _Interceptor(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, details, request):
            new = _Details(
                details.method,
                timeout,
                details.metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )
            return continuation(new, request)

    return _Interceptor()
