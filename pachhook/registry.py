"""Ask a registry (Docker Registry HTTP API v2) whether it serves a manifest, with the user's login.

Only what the push step needs: HEAD /v2/<name>/manifests/<reference>, answering the digest.
Basic auth and the token flow (`WWW-Authenticate: Bearer realm=...`) are both followed.
Credentials travel in request headers only; no message here ever includes them.
"""
from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional

MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))


class RegistryError(Exception):
    """The registry could not answer; `transient` when trying again later may help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Drop the Authorization header when a redirect leaves the registry (blob stores do)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def _basic(auth: Dict[str, str]) -> Optional[str]:
    user, password = auth.get("username"), auth.get("password")
    if not user or password is None:
        return None
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _challenge(header: str) -> Dict[str, str]:
    scheme, _, rest = header.partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    params["scheme"] = scheme.strip().lower()
    return params


class RegistrySession:
    def __init__(self, registry: str, auth: Optional[Dict[str, str]], secure: bool, timeout: float = 10.0) -> None:
        self.registry = registry
        self.auth = auth or {}
        self.secure = secure
        self.timeout = timeout
        self._authorization: Optional[str] = None
        self._opener = self._make_opener(verify=True)

    @staticmethod
    def _make_opener(verify: bool) -> urllib.request.OpenerDirector:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirectAuth())

    def _bases(self):
        if self.secure:
            return [("https", self._opener)]
        # As the engine does for an insecure registry: TLS without verification, else plain HTTP.
        return [("https", self._make_opener(verify=False)), ("http", self._opener)]

    def _send(self, method: str, path: str, headers: Dict[str, str]):
        """(status, headers) of one request; tries the schemes the registry allows."""
        last: Optional[BaseException] = None
        for scheme, opener in self._bases():
            request = urllib.request.Request(f"{scheme}://{self.registry}{path}", method=method, headers=headers)
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    return response.status, response.headers
            except urllib.error.HTTPError as error:
                return error.code, error.headers
            except (urllib.error.URLError, OSError) as error:
                last = error
                continue
        reason = getattr(last, "reason", last)
        raise RegistryError(f"registry {self.registry} unreachable: {' '.join(str(reason).split())[:200]}",
                            transient=True)

    def _token(self, challenge: Dict[str, str], scope: str) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.registry} asks for a token without naming where", transient=False)
        query = {"scope": scope}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        request = urllib.request.Request(realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query))
        basic = _basic(self.auth)
        if basic:
            request.add_header("Authorization", basic)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = json.loads(response.read().decode() or "{}")
        except urllib.error.HTTPError as error:
            raise RegistryError(f"token service of {self.registry} answered {error.code}",
                                transient=error.code >= 500) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise RegistryError(f"token service of {self.registry} unreachable: {getattr(error, 'reason', error)}",
                                transient=True) from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service of {self.registry} gave no token", transient=False)
        return f"Bearer {token}"

    def manifest_digest(self, name: str, reference: str) -> Optional[str]:
        """The digest the registry serves for name:reference (tag or digest), None when absent."""
        path = f"/v2/{name}/manifests/{reference}"
        headers = {"Accept": MANIFEST_TYPES}
        for _ in range(2):
            if self._authorization:
                headers["Authorization"] = self._authorization
            status, answer = self._send("HEAD", path, headers)
            if status == 401 and not self._authorization:
                challenge = _challenge(answer.get("WWW-Authenticate", "") if answer else "")
                if challenge["scheme"] == "bearer":
                    self._authorization = self._token(challenge, f"repository:{name}:pull")
                else:
                    self._authorization = _basic(self.auth)
                if self._authorization:
                    continue
                raise RegistryError(f"registry {self.registry} wants a login and the docker config has none "
                                    f"for it (docker login {self.registry})", transient=False)
            if status in (200,):
                digest = answer.get("Docker-Content-Digest") if answer else None
                return digest or None
            if status == 404:
                return None
            if status in (401, 403):
                raise RegistryError(f"registry {self.registry} refused the login from the docker config "
                                    f"({status}); run docker login {self.registry}", transient=False)
            if status >= 500 or status == 429:
                raise RegistryError(f"registry {self.registry} answered {status}", transient=True)
            raise RegistryError(f"registry {self.registry} answered {status} for {name}:{reference}",
                                transient=False)
        raise RegistryError(f"registry {self.registry} refused the login from the docker config", transient=False)
