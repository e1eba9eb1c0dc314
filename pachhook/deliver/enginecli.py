"""The Docker engine through the docker CLI: inspect, tag, pull and push images.

With a docker CLI installed (dockerclient.find_cli), a delivery talks to the engine through
it for everything, not only builds. The CLI finds the engine (DOCKER_HOST, its contexts) and
the user's logins (the docker config and its credential helpers) exactly as the user's own
`docker push` does, and docker-py, whose import alone costs ~0.25 s per process, is never
loaded. Without a CLI the steps use docker-py instead (dockerclient.make_client).

Every call is an argument list with stdin closed, a deadline and a session of its own
(cliprocess.py); the environment is clibuild.cli_env's, so the credential helpers the CLI
runs for a push or a pull are guarded and bounded as for builds. The CLI's words reach logs
and messages only cleaned (core/sanitize: no control sequences, bounded); the CLI never
prints a password, and nothing here passes one to it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from pachhook.core.sanitize import clean, one_line
from pachhook.deliver import cliprocess

QUICK_TIMEOUT = 120.0  # seconds for inspect, tag and info: the engine answers these at once
TRANSFER_TIMEOUT = 4 * 3600.0  # seconds for a push or a pull (layers may be large)
SILENCE_NOTICE = 10.0  # seconds without output before a push or pull gets a "still going" line

# Causes worth trying again: the network, the engine or a registry out of breath; not a
# refused login, a denied repository or an unknown manifest.
_TRANSIENT = re.compile(
    r"connection refused|connection reset|i/o timeout|timed? ?out|deadline exceeded|tls handshake timeout"
    r"|no such host|temporary failure|unexpected eof|\beof\b|too many requests|\b429\b"
    r"|\b5\d\d\b|service unavailable|internal server error|bad gateway|gateway timeout",
    re.I,
)
# The CLI's words when it cannot reach the engine (docker/cli: "Cannot connect to the Docker
# daemon at ...", and "error during connect" for tcp:// and npipe engines).
_NO_ENGINE = re.compile(r"cannot connect to the docker daemon|error during connect", re.I)
# A missing image of `docker image inspect`: "Error: No such image: REF" (CLI 20.10), or
# "Error response from daemon: no such image: REF: No such image: NORMALISED" (CLI 28).
_MISSING = re.compile(
    r"^(?:Error(?: response from daemon)?: )?no such (?:image|object): (.+?)(?:: No such image: .*)?$", re.I
)
_LAYER = re.compile(r"^([0-9a-f]{12}): (.+)$")
_PUSHED = re.compile(r"^(\S+): digest: (sha256:[0-9a-f]{64}) size: \d+$")
_PREFIX = re.compile(r"^(?:Error response from daemon|Error):\s*")


class EngineError(Exception):
    """The docker CLI could not do it; str() is the cause on one line (the CLI's own words)."""

    def __init__(self, message: str, transient: bool, cause: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.cause = cause or message  # the engine's or registry's own words, without what was asked


@dataclass(frozen=True)
class LocalImage:
    """An image the engine holds, as `docker image inspect` describes it."""

    id: str  # sha256:... (the config's digest)
    labels: Dict[str, str]
    repo_digests: Tuple[str, ...]  # REPOSITORY@sha256:... the engine pushed or pulled it as

    def digests_in(self, repository: str) -> Set[str]:
        """The manifest digests the image has in `repository` (from its pushes and pulls)."""
        found = set()
        for entry in self.repo_digests:
            name, _, digest = entry.partition("@")
            if name == repository and digest:
                found.add(digest)
        return found


def is_transient(cause: str) -> bool:
    """Whether a failure the engine or a registry gave may pass when tried again."""
    return bool(_TRANSIENT.search(cause))


def _env() -> Dict[str, str]:
    from pachhook.deliver import clibuild

    return clibuild.cli_env(buildkit=False)


def cannot_connect(text: str) -> bool:
    """Whether the CLI's words say it could not reach the engine at all."""
    return bool(_NO_ENGINE.search(text))


def _failure(what: str, text: str) -> Exception:
    """The error for a failed CLI call: the engine unreachable, or the CLI's last words."""
    from pachhook.deliver import dockerclient

    lines = [clean(line) for line in text.splitlines()]
    lines = [line for line in lines if line.strip() and not line.startswith("WARNING:")]
    cause = _PREFIX.sub("", lines[-1]) if lines else "no output"
    if _NO_ENGINE.search(cause):
        return dockerclient.unreachable("the docker CLI cannot connect to it")
    cause = one_line(cause, 1000)
    return EngineError(f"{what}: {cause}", transient=is_transient(cause), cause=cause)


def _quick(cli: str, args: Sequence[str]) -> Tuple[int, str, str]:
    try:
        status, output, errors = cliprocess.run([cli, *args], _env(), QUICK_TIMEOUT)
    except TimeoutError as error:
        raise EngineError(str(error), transient=True) from None
    except OSError as error:
        raise EngineError(f"cannot run {cli}: {error.strerror or error}", transient=False) from None
    return status, output.decode("utf-8", "replace"), errors.decode("utf-8", "replace")


def inspect_images(cli: str, refs: Sequence[str]) -> Dict[str, LocalImage]:
    """The images the engine holds among refs (names, NAME@DIGEST or ids), by ref, with one
    `docker image inspect`; a ref the engine does not hold is left out, not an error.

    Raises dockerclient.EngineUnavailable when the engine does not answer, EngineError
    for anything else.
    """
    wanted = list(dict.fromkeys(ref for ref in refs if ref))
    if not wanted:
        return {}
    status, output, errors = _quick(cli, ["image", "inspect", *wanted])
    missing: Set[str] = set()
    if status != 0:
        for line in errors.splitlines():
            text = line.strip()
            if not text or text.startswith("WARNING:"):
                continue
            found = _MISSING.match(text)
            if found is None or found.group(1) not in wanted:
                raise _failure("docker image inspect", errors)
            missing.add(found.group(1))
        if not missing:
            raise _failure("docker image inspect", errors)
    try:
        described = json.loads(output or "[]")
    except ValueError:
        raise EngineError("docker image inspect printed no JSON", transient=False) from None
    present = [ref for ref in wanted if ref not in missing]
    # The CLI describes the images it found in the order it was given them.
    if not isinstance(described, list) or len(described) != len(present):
        raise EngineError("docker image inspect described other images than it was asked for", transient=False)
    images: Dict[str, LocalImage] = {}
    for ref, entry in zip(present, described):
        if not isinstance(entry, dict):
            continue
        config = entry.get("Config")
        config = config if isinstance(config, dict) else {}
        labels = config.get("Labels")
        labels = labels if isinstance(labels, dict) else {}
        digests = entry.get("RepoDigests")
        digests = digests if isinstance(digests, list) else []
        images[ref] = LocalImage(
            id=str(entry.get("Id", "")),
            labels={str(key): str(value) for key, value in labels.items()},
            repo_digests=tuple(str(digest) for digest in digests),
        )
    return images


def tag(cli: str, source: str, target: str) -> None:
    """Give the image `source` names the name `target` (`docker tag`)."""
    status, _, errors = _quick(cli, ["tag", source, target])
    if status != 0:
        raise _failure(f"docker tag {source} {target}", errors)


def registry_config(cli: str) -> Dict[str, Any]:
    """The engine's registry settings (`docker info`'s RegistryConfig: IndexConfigs with each
    registry's Secure flag, InsecureRegistryCIDRs); {} when the engine does not say."""
    status, output, _ = _quick(cli, ["info", "--format", "{{json .RegistryConfig}}"])
    if status != 0:
        return {}
    try:
        found = json.loads(output)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# (layer id, or "" for a line of its own; the status, cleaned; bytes done and in all, 0 when unknown)
Progress = Callable[[str, str, int, int], None]

# A layer's transfer as the CLI shows it on a terminal: "Pushing [==>  ]  2.163MB/8.389MB"
# (docker/docker pkg/jsonmessage, JSONProgress.String; the bar only on a wide terminal; sizes
# in go-units' HumanSize, powers of 1000).
_BYTES = re.compile(
    r"^(?P<status>[A-Za-z][A-Za-z ]*?)\s+(?:\[[=> ]*\]\s*)?"
    r"(?P<current>\d+(?:\.\d+)?[kMGTP]?B)(?:/(?P<total>\d+(?:\.\d+)?[kMGTP]?B))?\s*$"
)
_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}


def _size(text: Optional[str]) -> int:
    """go-units' HumanSize ("2.163MB") back to bytes (approximately: it keeps 4 digits)."""
    found = re.match(r"^(\d+(?:\.\d+)?)([kMGTP]?B)$", text or "")
    return int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0


def _transfer(cli: str, args: Sequence[str], what: str, progress: Progress, terminal: bool = False) -> List[str]:
    """Run a push or pull, its lines to progress as they come; every line, cleaned.

    terminal: the CLI writes to a pseudo-terminal, where it shows each layer's bytes (a
    terminal's live view draws them). A silence of SILENCE_NOTICE seconds (a large layer going
    up without a terminal, where the CLI prints no progress) gets a line too.
    """
    seen: List[str] = []
    started = time.monotonic()
    last = [started]

    def on_line(raw: str) -> None:
        line = clean(raw, 1000)
        if not line.strip():
            return
        last[0] = time.monotonic()
        layer = _LAYER.match(line)
        if not layer:
            seen.append(line)
            progress("", line, 0, 0)
            return
        moving = _BYTES.match(layer.group(2))
        if moving:
            progress(layer.group(1), moving["status"], _size(moving["current"]), _size(moving["total"]))
        else:
            seen.append(line)
            progress(layer.group(1), layer.group(2).strip(), 0, 0)

    def on_idle() -> None:
        now = time.monotonic()
        if now - last[0] >= SILENCE_NOTICE:
            last[0] = now
            progress("", f"… still going after {now - started:.0f}s", 0, 0)

    try:
        status = cliprocess.stream([cli, *args], _env(), on_line, TRANSFER_TIMEOUT, on_idle=on_idle, terminal=terminal)
    except TimeoutError:
        raise EngineError(f"{what} ran longer than {TRANSFER_TIMEOUT:.0f}s and was ended", transient=True) from None
    except OSError as error:
        raise EngineError(f"cannot run {cli}: {error.strerror or error}", transient=False) from None
    if status != 0:
        tail = [line for line in seen if not _LAYER.match(line) and not line.startswith("The push refers to")]
        raise _failure(what, "\n".join(tail) or f"exit status {status}")
    return seen


def pull(cli: str, ref: str, progress: Progress) -> None:
    """`docker pull REF`, with the user's login for its registry (the CLI finds it)."""
    _transfer(cli, ["pull", ref], f"docker pull {ref}", progress)


def push(cli: str, repository: str, tag_name: str, progress: Progress, terminal: bool = False) -> str:
    """`docker push REPOSITORY:TAG`; the digest of the manifest the registry took for TAG.
    terminal: with each layer's bytes (see _transfer).

    Raises EngineError (transient or not, the registry's or the engine's own words) or
    dockerclient.EngineUnavailable.
    """
    ref = f"{repository}:{tag_name}"
    lines = _transfer(cli, ["push", ref], f"docker push {ref}", progress, terminal)
    for line in lines:
        found = _PUSHED.match(line)
        if found and found.group(1) == tag_name:
            return found.group(2)
    raise EngineError(f"docker push {ref} ended without naming the pushed digest", transient=True)
