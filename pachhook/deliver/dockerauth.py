"""The user's docker config and the login it holds for a registry, read without docker-py.

The one home of "which login does the docker config give for this registry": pachhook's own
registry requests and the engine's push and pull (handed the result explicitly) both use it.
The lookup is docker-py's (docker/auth.py, `AuthConfig.resolve_authconfig`), which follows the
docker CLI's (https://docs.docker.com/reference/cli/docker/#credential-store):

1. the credential helper `credHelpers` names for the registry, else the `credsStore` one, is
   asked `get` for it (Docker Hub as `https://index.docker.io/v1/`); a helper that knows no
   login for it (an error saying "credentials not found", or an empty answer) passes on to
2. the registry's entry in `auths` (keys compared as host names, `index.docker.io` as
   `docker.io`): `identitytoken`, else `auth` (base64 of `user:password`).

Helpers run through credhelpers.ask: closed stdin, no terminal, a deadline. Logins stay in
memory: no message here includes one, and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
from typing import Any, Dict, Optional

from pachhook.core.sanitize import one_line
from pachhook.deliver import credhelpers

DOCKER_HUB = "docker.io"
DOCKER_HUB_HELPER_KEY = "https://index.docker.io/v1/"  # what helpers file Docker Hub's login under
TOKEN_USERNAME = "<token>"  # a helper's answer holding an identity token, not a password


class LoginUnavailable(Exception):
    """The docker config names a login for the registry that cannot be read; str() says why."""


def docker_config_file() -> str:
    """The docker config file the CLI and docker-py read: $DOCKER_CONFIG/config.json or ~/.docker/config.json."""
    folder = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(folder, "config.json")


def docker_config_problem() -> str:
    """What is wrong with the docker config file, in one line ("" when it is fine or absent).

    docker-py reads a malformed file half-way and fails later with an unrelated message
    (an `AttributeError` that read as "engine not reachable", or a login silently missing).
    """
    return _load_config()[0]


def _load_config() -> "tuple[str, Dict[str, Any]]":
    """(what is wrong with the docker config, "" when nothing; its content, {} when absent or wrong)."""
    path = docker_config_file()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return "", {}
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", "") or error
        return f"docker config {path} cannot be read ({reason})", {}
    if not text.strip():
        return "", {}
    try:
        data = json.loads(text)
    except ValueError as error:
        where = getattr(error, "lineno", "?")
        return f"docker config {path} is not valid JSON (line {where}: {getattr(error, 'msg', error)})", {}
    if not isinstance(data, dict):
        return f"docker config {path} must hold a JSON object, not {type(data).__name__}", {}
    auths = data.get("auths", {})
    if not isinstance(auths, dict):
        return f'docker config {path}: "auths" must be an object of registries', {}
    for registry, entry in auths.items():
        if not isinstance(entry, dict):
            return f'docker config {path}: the entry for {registry} in "auths" must be an object', {}
        auth = entry.get("auth")
        if auth:
            try:
                decoded = base64.b64decode(str(auth), validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return (
                    f"docker config {path}: the login for {registry} is not valid base64; run docker login {registry}",
                    {},
                )
            if ":" not in decoded:
                return (
                    f"docker config {path}: the login for {registry} is not user:password; run docker login {registry}",
                    {},
                )
    for key in ("credsStore", "credStore"):
        if key in data and not isinstance(data[key], str):
            return f'docker config {path}: "{key}" must be a string', {}
    if "credHelpers" in data and not isinstance(data["credHelpers"], dict):
        return f'docker config {path}: "credHelpers" must be an object', {}
    return "", data


def _user_password(auth: str) -> "tuple[str, str]":
    """`auth` of an `auths` entry (checked by _load_config) as (user, password)."""
    user, _, password = base64.b64decode(auth).decode("utf-8").partition(":")
    return user, password


def _host_name(key: str) -> str:
    """An `auths` key as docker-py compares it: no scheme, no path, index.docker.io as docker.io."""
    host = key.replace("http://", "").replace("https://", "").split("/", 1)[0]
    return DOCKER_HUB if host == f"index.{DOCKER_HUB}" else host


def registry_login(registry: str) -> Optional[Dict[str, str]]:
    """The login the user's docker config holds for registry (a host, `docker.io` for Docker
    Hub), or None when it holds none.

    Keys as the engine's X-Registry-Auth reads them, lower case: username and password, or
    identitytoken; serveraddress. Raises LoginUnavailable when the config is malformed or its
    helper fails or is not installed, credhelpers.CredentialHelperError when the helper does
    not answer in time.
    """
    problem, config = _load_config()
    if problem:
        raise LoginUnavailable(problem)
    helper_key = DOCKER_HUB_HELPER_KEY if registry == DOCKER_HUB else registry
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(helper_key) or config.get("credsStore")
    if helper:
        found = _ask_helper(str(helper), helper_key)
        if found:
            return found
    return _from_auths(config.get("auths") or {}, _host_name(registry))


def _ask_helper(name: str, server: str) -> Optional[Dict[str, str]]:
    """The helper's login for server; None when it has none (docker-py: CredentialsNotFound)."""
    program = credhelpers.PREFIX + name
    executable = shutil.which(program)
    if executable is None:
        raise LoginUnavailable(f"docker credential helper {program} (named in {docker_config_file()}) is not installed")
    try:
        output = credhelpers.ask(executable, ["get"], server.encode())
    except credhelpers.HelperFailed as failed:
        # the helper protocol's "no login" (docker-credential-helpers, credentials/error.go)
        if "credentials not found" in str(failed).lower():
            return None
        raise LoginUnavailable(
            f"docker credential helper {program} failed for {server}: {one_line(str(failed), 200)}"
        ) from None
    except OSError as error:
        raise LoginUnavailable(f"docker credential helper {program} cannot run: {error.strerror or error}") from None
    try:
        answer = json.loads(output.decode("utf-8"))
        user, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
    except (ValueError, AttributeError):
        raise LoginUnavailable(f"docker credential helper {program} gave an answer that is not its JSON") from None
    if not user and not secret:
        return None  # docker-credential-pass answers so for a server it does not know
    if user == TOKEN_USERNAME:
        return {"identitytoken": secret, "serveraddress": server}
    return {"username": user, "password": secret, "serveraddress": server}


def _from_auths(auths: Dict[str, Any], host: str) -> Optional[Dict[str, str]]:
    entry = auths.get(host)
    if entry is None:
        entry = next((value for key, value in auths.items() if _host_name(key) == host), None)
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        return {"identitytoken": str(entry["identitytoken"]), "serveraddress": host}
    if not entry.get("auth"):
        return None  # an empty entry: the login lives in a credential store
    user, password = _user_password(str(entry["auth"]))
    return {"username": user, "password": password, "serveraddress": host}
