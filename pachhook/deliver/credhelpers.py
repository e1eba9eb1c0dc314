"""Docker credential helpers, asked with no terminal, a closed stdin and a deadline.

A helper (`docker-credential-NAME`, named by `credsStore` or `credHelpers` in the docker
config) may wait for input: a keychain to unlock, a prompt on the terminal, a desktop dialog.
In a worker nobody answers, and the build or push would wait forever while the job's lease
keeps being renewed. So every call is bounded, and one that does not end in time fails the
step with a line naming the helper:

- pachhook's own calls: the login for one registry (dockerauth.py: registry requests, the
  engine's push and pull) runs the helper through `ask`; docker-py's legacy engine-API
  build, which sends every login of the config, asks its credential store objects, which
  here run the helper through `ask` too;
- the docker CLI's calls (a BuildKit build asks for the logins of its base and cache images):
  the CLI runs `docker-credential-NAME` found on its PATH, where a guard of the same name
  comes first and runs the real helper through `ask`.

The helper reads the server name (or nothing) on stdin, which is then closed; it runs in a
session of its own, so it has no terminal to open; at the deadline it is ended with
everything it started. Answers stay in memory: never logged, never stored.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from pachhook.deliver.steps.base import StepError

PREFIX = "docker-credential-"
TIMEOUT_ENV = "PACHHOOK_CREDENTIAL_HELPER_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds; a helper that asks a cloud for a token answers in a few


class CredentialHelperError(StepError):
    """A credential helper did not answer in time; str() names it and what to do."""

    def __init__(self, message: str) -> None:
        # Waiting again does not help until someone unlocks or logs in: not retried by itself.
        super().__init__(message, retryable=False)


class HelperFailed(Exception):
    """The helper ended with a non-zero status; its output is the helper protocol's message."""

    def __init__(self, status: int, output: bytes) -> None:
        super().__init__(output.decode("utf-8", "replace").strip() or f"exit status {status}")
        self.status, self.output = status, output


def timeout() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def ask(
    executable: str, args: Sequence[str], data: bytes, env: Optional[Dict[str, str]] = None, deadline: float = 0.0
) -> bytes:
    """Run a credential helper with `data` on stdin (then closed); its stdout.

    Raises CredentialHelperError when it does not end within the deadline (ended with its
    whole process group), HelperFailed when it exits non-zero.
    """
    limit = deadline or timeout()
    process = subprocess.Popen(
        [executable, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal to prompt on; one group to end
    )
    try:
        output, errors = process.communicate(data, timeout=limit)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()  # a child that left the group may hold the pipe: not read again
        name = os.path.basename(executable)
        asked = f"`{args[0]}`" + (f" for {data.decode('utf-8', 'replace').strip()}" if data.strip() else "")
        raise CredentialHelperError(
            f"docker credential helper {name} did not answer {asked} within {limit:g}s: it may be waiting for"
            " input no one can give here (a locked keychain, a password prompt); unlock it or log in once in a"
            " terminal (docker login), then pachhook retry"
        ) from None
    if process.returncode != 0:
        # the helper protocol puts its error on stdout (docker-credential-helpers, client.go)
        raise HelperFailed(process.returncode, output or errors)
    return output


# ---------------------------------------------------------------- docker-py's calls


def bounded_auth_config(credstore_env: Optional[Dict[str, str]] = None) -> Any:
    """The user's docker login as docker-py reads it, its credential helpers run through `ask`.

    Give it to a client as `client.api._auth_configs` before an engine-API build: docker-py
    sends the engine every login of the config for the base images. (Pushes and pulls are
    handed the one login dockerauth.py finds.)
    """
    from docker import auth, credentials
    from docker.credentials.errors import process_store_error
    from docker.credentials.utils import create_environment_dict

    class BoundedStore(credentials.Store):
        def _execute(self, subcmd: str, data_input: Optional[bytes]) -> bytes:
            if self.exe is None:
                raise credentials.StoreError(f"{self.program} not installed or not available in PATH")
            env = create_environment_dict(self.environment)
            try:
                return ask(self.exe, [subcmd], data_input or b"", env)
            except HelperFailed as failed:
                # docker-py's own reading of a failure: "not found" is no error, only no login
                error = subprocess.CalledProcessError(failed.status, [self.exe, subcmd], output=failed.output)
                raise process_store_error(error, self.program) from None

    class BoundedAuthConfig(auth.AuthConfig):
        # docker-py makes its store objects here (docker/auth.py, AuthConfig._get_store_instance).
        def _get_store_instance(self, name: str) -> Any:
            if name not in self._stores:
                self._stores[name] = BoundedStore(name, environment=self._credstore_env)
            return self._stores[name]

    loaded = auth.load_config(credstore_env=credstore_env)
    return BoundedAuthConfig(dict(loaded), credstore_env)


# ---------------------------------------------------------------- the docker CLI's calls

_GUARD = """#!{python}
# pachhook's guard for {name}: the docker CLI runs this instead, so that the helper gets a
# closed stdin, no terminal and a deadline (pachhook/deliver/credhelpers.py). Made anew per build.
import sys
sys.path.insert(0, {package_parent!r})
from pachhook.deliver.credhelpers import guard_main
sys.exit(guard_main({real!r}))
"""

_GUARD_FOLDER: List[str] = []  # one per process, made on first use, removed at exit ("": unusable)


def helper_names(config_file: str) -> List[str]:
    """The credential helpers the docker config names (credsStore, credHelpers), sorted."""
    try:
        with open(config_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    names = {data.get("credsStore"), data.get("credStore")}
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict):
        names.update(helpers.values())
    # A name is a file name suffix: anything else could point outside the guard folder.
    return sorted(
        name for name in names if isinstance(name, str) and name and name.replace("-", "").replace("_", "").isalnum()
    )


def guarded_path(env: Dict[str, str], config_file: str) -> str:
    """PATH for a docker CLI run with env: a guard for each helper the config names comes first.

    Helpers not installed get no guard (the CLI then says they are missing, as it would).
    """
    path = env.get("PATH", os.defpath)
    guards: Dict[str, str] = {}
    for name in helper_names(config_file):
        real = shutil.which(PREFIX + name, path=path)
        if real is not None:
            guards[PREFIX + name] = os.path.realpath(real)
    if not guards:
        return path
    if not _GUARD_FOLDER:
        _GUARD_FOLDER.append(_guard_folder())
    folder = _GUARD_FOLDER[0]
    if not folder:
        return path  # no folder here can hold a program that runs: the helpers run unguarded
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for program, real in guards.items():
        text = _GUARD.format(python=sys.executable, name=program, package_parent=package_parent, real=real)
        target = os.path.join(folder, program)
        scratch = f"{target}.{os.getpid()}.tmp"
        with open(scratch, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(scratch, 0o700)
        os.replace(scratch, target)  # a CLI running meanwhile never finds half a guard
    return folder + os.pathsep + path


def _guard_folder() -> str:
    """A private folder for this process's guards, removed at exit; "" when programs cannot
    run from it (a temporary folder mounted noexec), so that the CLI is never handed a guard
    it cannot start."""
    import atexit

    folder = tempfile.mkdtemp(prefix="pachhook-credential-guards-")
    atexit.register(shutil.rmtree, folder, True)
    probe = os.path.join(folder, "probe")
    with open(probe, "w", encoding="utf-8") as handle:
        handle.write("#!/bin/sh\nexit 0\n")
    os.chmod(probe, 0o700)
    try:
        ran = subprocess.run([probe], stdin=subprocess.DEVNULL, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ran = False
    os.unlink(probe)
    return folder if ran else ""


def guard_main(real: str, argv: Optional[Sequence[str]] = None) -> int:
    """The guard's body: the real helper run through `ask`, its answer passed on as it is."""
    args = list(sys.argv[1:] if argv is None else argv)
    data = sys.stdin.buffer.read() if sys.stdin is not None else b""  # the CLI closes it after the server
    try:
        output = ask(real, args, data)
    except CredentialHelperError as error:
        # The helper protocol's error channel is stdout; the CLI quotes it in its own error.
        sys.stdout.write(str(error))
        return 1
    except HelperFailed as failed:
        sys.stdout.buffer.write(failed.output)
        return failed.status
    except OSError as error:
        sys.stdout.write(f"cannot run {real}: {error.strerror or error}")
        return 1
    sys.stdout.buffer.write(output)
    return 0
