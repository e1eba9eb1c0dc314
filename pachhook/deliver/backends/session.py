"""A private Pachyderm session: one context, no active transaction, the user's file untouched.

pachctl keeps the active transaction per context in its configuration file and routes
`update pipeline` into it, printing only "Added to transaction: <id>"
(pachyderm/pachyderm src/server/transaction/cmds/util.go, WithActiveTransaction). A
background delivery that used the user's file could therefore silently join a
transaction the user has open, and pachctl writes that file on its own (the deployment
ID on first connect, transactions on start and finish; "TODO: use advisory locks on
config", transaction/cmds/cmds.go). So every pachhook session copies the one context it
needs into a private file and points PACH_CONFIG at it, with PACH_CONTEXT naming it.

Which context: the environment's `context`, else PACH_CONTEXT, else the file's
`active_context` (src/internal/config/config.go, ActiveContext: PACH_CONTEXT names a
context that must exist). Which file: PACH_CONFIG, else ~/.pachyderm/config.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from pachhook.deliver.backends.pachctl import BackendError

# Keys of a context copied into the private file minus these: a transaction the user has
# open must not receive pachhook's updates, and the deployment ID is left for pachctl to
# fill from the cluster it reaches (it writes it on first connect, client.go), so that the
# value pachhook checks is the cluster's, not one remembered from another cluster.
DROPPED_KEYS = ("active_transaction", "cluster_deployment_id")


def user_config_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Where the user's pachctl reads its configuration (PACH_CONFIG, else ~/.pachyderm/config.json)."""
    environ = os.environ if environ is None else environ
    configured = environ.get("PACH_CONFIG")
    if configured:
        return Path(os.path.expanduser(configured))
    return Path(environ.get("HOME") or str(Path.home())) / ".pachyderm" / "config.json"


@dataclass
class Session:
    """A private PACH_CONFIG holding one context; `env` is what pachctl runs with."""

    context: str  # the context's name
    project: str  # the project updates go to ("" = the context's, else pachd's default)
    config_file: Path  # the private file
    env: Dict[str, str] = field(default_factory=dict)
    user_file: Optional[Path] = None  # the user's file it was copied from (never written)
    address: str = ""  # pachd_address of the context ("" = pachctl's default)

    def context_data(self) -> Dict[str, Any]:
        """The context as the private file has it now (pachctl may have filled in fields)."""
        try:
            data = json.loads(self.config_file.read_text(encoding="utf-8"))
            context = data["v2"]["contexts"][self.context]
            return context if isinstance(context, dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def close(self) -> None:
        shutil.rmtree(self.config_file.parent, ignore_errors=True)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_session(context: str = "", project: str = "", environ: Optional[Mapping[str, str]] = None) -> Session:
    """Copy the chosen context into a private configuration; BackendError (one line) when it cannot."""
    environ = dict(os.environ if environ is None else environ)
    user_file = user_config_path(environ)
    data: Any = None
    if user_file.is_file():
        try:
            data = json.loads(user_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise BackendError(f"cannot read the pachctl configuration {user_file}: {error}", retryable=False) from None
    v2 = data.get("v2") if isinstance(data, dict) else None
    contexts = v2.get("contexts") if isinstance(v2, dict) else None
    contexts = contexts if isinstance(contexts, dict) else {}
    name = context or environ.get("PACH_CONTEXT", "") or (v2.get("active_context", "") if isinstance(v2, dict) else "")
    if data is None and not name:
        # No configuration at all: pachctl would make one with a context named `default`
        # and no address on first use (config.go); the private file is that one.
        name, chosen = "default", {}
    elif not name:
        raise BackendError(
            f"the pachctl configuration {user_file} has no active context: set one with "
            "`pachctl config set active-context NAME` or name it in the environment's `context`",
            retryable=False,
        )
    elif name not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        source = "the environment's `context`" if context else "PACH_CONTEXT" if environ.get("PACH_CONTEXT") else ""
        raise BackendError(
            f"pachctl context {name!r}{' (from ' + source + ')' if source else ''} is not in {user_file}"
            f" (contexts there: {known})",
            retryable=False,
        )
    else:
        chosen = contexts[name]
        if not isinstance(chosen, dict):
            raise BackendError(f"pachctl context {name!r} in {user_file} is not an object", retryable=False)
    private_context = {key: value for key, value in chosen.items() if key not in DROPPED_KEYS}
    private = {"v2": {"active_context": name, "contexts": {name: private_context}, "metrics": False}}
    if isinstance(data, dict) and isinstance(data.get("user_id"), str):
        private["user_id"] = data["user_id"]
    folder = Path(tempfile.mkdtemp(prefix="pachhook-session-"))  # 0700: it may hold a session token
    config_file = folder / "config.json"
    descriptor = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(private, handle)
    env = {key: value for key, value in environ.items()}
    env["PACH_CONFIG"] = str(config_file)
    env["PACH_CONTEXT"] = name
    if context:
        # PACHD_ADDRESS overrides the context's address (client.go): a value left in the
        # user's shell must not send a named environment's updates to another cluster.
        env.pop("PACHD_ADDRESS", None)
    return Session(
        context=name,
        project=project or str(private_context.get("project", "") or ""),
        config_file=config_file,
        env=env,
        user_file=user_file if data is not None else None,
        address=str(private_context.get("pachd_address", "") or ""),
    )
