"""`pachhook validate --cluster`: the cluster's own JSON schema beside pachhook's.

pachd 2.8+ serves the JSON schemas generated from its protobuf definitions over HTTP at
`/jsonschema/` (`src/server/http/http.go`: a file server over `internal/jsonschema`), the
pipeline spec's at `/jsonschema/pps_v2/CreatePipelineRequest.schema.json`. This module
fetches it from the address of the active pachctl context (the Pachyderm proxy serves
gRPC and HTTP on one port), keeps it per pachd version, evaluates every spec with the
jsonschema library and reports where the cluster's verdict and pachhook's differ.

jsonschema costs ~100 ms to import: it is imported here only, and this module only for
`--cluster`, never on the hook path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from pachhook.core.diagnostics import WARNING, Diagnostic, JsonPath, Problem
from pachhook.core.sanitize import one_line
from pachhook.spec import schema, wording
from pachhook.spec.loader import load_path
from pachhook.spec.template import render, sample_values

SCHEMA_PATH = "/jsonschema/pps_v2/CreatePipelineRequest.schema.json"
MAX_SCHEMA_BYTES = 5 * 1024 * 1024  # the real one is ~50 kB
TIMEOUT_S = 10.0


class ClusterError(Exception):
    """The cluster's schema could not be had; the message says why and what to do."""

    def __init__(self, message: str) -> None:
        # The message quotes the pachctl configuration and the network's answer: outside
        # text, made one safe line here for every caller.
        super().__init__(one_line(message))


@dataclass
class ClusterSchema:
    url: str
    version: str  # pachd's version, "" when it could not be asked
    schema: Dict[str, Any]
    cached: bool  # read from the cache, not fetched


def pachctl_address(environ: Mapping[str, str] = os.environ) -> str:
    """pachd's address as pachctl finds it: PACHD_ADDRESS, else the active context's."""
    if environ.get("PACHD_ADDRESS"):
        return environ["PACHD_ADDRESS"]
    configured = environ.get("PACH_CONFIG")
    path = Path(os.path.expanduser(configured)) if configured else Path.home() / ".pachyderm" / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        v2 = data["v2"]
        name = environ.get("PACH_CONTEXT") or v2["active_context"]
        address = v2["contexts"][name]["pachd_address"]
    except OSError:
        raise ClusterError(f"no pachctl configuration at {path}: connect with `pachctl connect ADDRESS`") from None
    except (ValueError, KeyError, TypeError):
        raise ClusterError(f"pachctl configuration {path} names no active context with a pachd_address") from None
    if not isinstance(address, str) or not address:
        raise ClusterError(f"the active context of {path} has no pachd_address")
    return address


def schema_url(address: str) -> str:
    """The schema's URL at a pachd address (`grpc://host:port`, `grpcs://...`, `host:port`)."""
    if "://" in address:
        scheme, rest = address.split("://", 1)
        scheme = {"grpcs": "https", "https": "https"}.get(scheme, "http")
    else:
        scheme, rest = "http", address
    return f"{scheme}://{rest.rstrip('/')}{SCHEMA_PATH}"


def pachd_version(pachctl: str = "pachctl", timeout: float = TIMEOUT_S) -> str:
    """pachd's version from `pachctl version` ("" when it cannot be asked)."""
    try:
        result = subprocess.run(
            [pachctl, "version"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r"^pachd\s+(\S+)", result.stdout, re.MULTILINE)
    version = match.group(1) if match else ""
    return version if re.fullmatch(r"[0-9A-Za-z.+-]{1,40}", version) else ""


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pachhook" / "cluster-schema"


def fetch(url: str, version: str, cache: Optional[Path] = None) -> ClusterSchema:
    """The schema at `url`, from the cache when this pachd version's is there."""
    folder = cache if cache is not None else cache_folder()
    cached = folder / f"{version}.json" if version else None
    if cached is not None and cached.is_file():
        try:
            return ClusterSchema(url, version, json.loads(cached.read_text(encoding="utf-8")), True)
        except (OSError, ValueError):
            pass  # a damaged cache entry is fetched again
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            body = response.read(MAX_SCHEMA_BYTES + 1)
    except urllib.error.HTTPError as error:
        hint = " (pachd older than 2.8 serves no schema)" if error.code == 404 else ""
        raise ClusterError(f"{url}: HTTP {error.code}{hint}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ClusterError(f"cannot reach {url}: {reason}") from None
    if len(body) > MAX_SCHEMA_BYTES:
        raise ClusterError(f"{url}: the answer is over {MAX_SCHEMA_BYTES // 1048576} MB, not a pipeline spec schema")
    try:
        loaded = json.loads(body)
    except ValueError:
        raise ClusterError(f"{url}: the answer is not JSON") from None
    if not isinstance(loaded, dict):
        raise ClusterError(f"{url}: the answer is not a JSON schema")
    if cached is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(loaded), encoding="utf-8")
            os.replace(temporary, cached)
        except OSError:
            pass  # no cache is no failure
    return ClusterSchema(url, version, loaded, False)


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare(document: Any, cluster: ClusterSchema, validator: Any = None) -> List[Problem]:
    """Where the cluster's schema and pachhook's judge `document` differently (warnings)."""
    if validator is None:
        validator = make_validator(cluster)
    theirs = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    ours = [problem for problem in schema.check(document) if problem.rule in wording.SCHEMA_RULE_IDS]
    who = f"pachd {cluster.version}" if cluster.version else "the cluster"
    if theirs and not ours:
        return [
            Problem(
                _where(error),
                f"the schema {who} serves refuses this and pachhook's accepts it: {_shorten(error.message)}",
                WARNING,
                "cluster-schema",
            )
            for error in theirs[:5]
        ]
    if ours and not theirs:
        first = ours[0]
        return [
            Problem(
                first.path,
                f"pachhook's schema refuses this and the schema {who} serves accepts it: {first.message}",
                WARNING,
                "cluster-schema",
            )
        ]
    return []


def _where(error: Any) -> JsonPath:
    """The path of a jsonschema error; for an unexpected key, the key itself (its line)."""
    path: JsonPath = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(key for key in error.instance if key not in known)
        if extra:
            path += (extra[0],)
    return path


def make_validator(cluster: ClusterSchema) -> Any:
    import jsonschema  # the one place it is used at run time

    cls = jsonschema.validators.validator_for(cluster.schema, default=jsonschema.Draft4Validator)
    return cls(cluster.schema)


def compare_paths(paths: Sequence[Union[str, Path]], cluster: ClusterSchema) -> List[Diagnostic]:
    """compare() over every spec of the given files (rendered with sample values)."""
    validator = make_validator(cluster)
    diagnostics: List[Diagnostic] = []
    for path in paths:
        if str(path).endswith(".jsonnet"):
            continue  # rendered by gojsonnet in the normal check; not compared here
        loaded = load_path(path)
        several = len(loaded.documents) > 1
        for document in loaded.documents:
            rendered, _ = render(document.value, sample_values())
            for problem in compare(rendered, cluster, validator):
                diagnostics.append(document.diagnostic(str(path), problem, several))
    return diagnostics
