"""Talk to a registry (Docker Registry HTTP API v2) with the user's login, for the push step.

Only what that step needs: whether a manifest is served (HEAD /v2/<name>/manifests/<ref>,
answering the digest), and giving a manifest the registry already holds another tag.
Basic auth and the token flow (`WWW-Authenticate: Bearer realm=...`) are both followed.
Credentials travel in request headers only; no message here ever includes them.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

# urllib.request, http.client and ssl (~20 ms with email behind them) are imported where a
# request is made: a code change's delivery imports this module for its names and makes none.
if TYPE_CHECKING:
    import urllib.request

from pachhook.core.sanitize import one_line

# Docker Hub's images are named docker.io/..., but its registry API answers elsewhere.
DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "registry-1.docker.io"

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


class RegistryError(Exception):
    """The registry could not answer; `transient` when trying again later may help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class ImageConfig:
    """An image's config blob as a registry serves it."""

    digest: str  # the blob's digest: the image id an engine gives the image ("" when unknown)
    labels: Dict[str, str]


def _no_redirect_auth() -> "urllib.request.HTTPRedirectHandler":
    """A redirect handler that drops the Authorization header when a redirect leaves the
    registry (blob stores do)."""
    import urllib.parse
    import urllib.request

    class NoRedirectAuth(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
                new.headers.pop("Authorization", None)
                new.unredirected_hdrs.pop("Authorization", None)
            return new

    return NoRedirectAuth()


def api_host(registry: str) -> str:
    """The host that serves registry's HTTP API (`registry-1.docker.io` for Docker Hub)."""
    return DOCKER_HUB_API if registry in DOCKER_HUB_NAMES else registry


def describe_failure(error: BaseException, timeout: float) -> Tuple[str, bool]:
    """(what went wrong, in a few words; whether trying again may help) for a failed request."""
    import http.client
    import ssl
    import urllib.error

    reason = getattr(error, "reason", None) if isinstance(error, urllib.error.URLError) else error
    reason = reason if isinstance(reason, BaseException) else error
    text = one_line(reason, 200)
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in text.lower():
        return f"no answer within {timeout:g}s (timed out)", True
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({one_line(reason.verify_message or text, 200)})", False
    if isinstance(reason, ssl.SSLError):
        return f"TLS failed ({text})", True
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens there)", True
    if isinstance(reason, ConnectionResetError):
        return "connection reset by the registry", True
    if isinstance(reason, socket.gaierror):
        return f"host name not found ({text})", True
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the registry closed the connection without answering", True
    if isinstance(reason, http.client.HTTPException):
        return f"not an HTTP answer ({type(reason).__name__}: {text})", True
    return text or type(reason).__name__, True


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


Login = Optional[Dict[str, str]]


def insecure_by_default(registry: str) -> bool:
    """Whether every Docker engine talks to registry without TLS checks, whatever its settings:
    `localhost` and 127.0.0.0/8, the engine's built-in insecure registries (moby
    registry/config.go, loadInsecureRegistries: "Localhost is by default considered as an
    insecure registry"). Not ::1: that list has no IPv6 address."""
    import ipaddress

    host = registry.rsplit(":", 1)[0].strip("[]") if registry.count(":") <= 1 or registry.startswith("[") else registry
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


class RegistrySession:
    """Requests to one registry. `auth` is the login, or a function giving it when the
    registry first asks for one (a credential helper then runs only if a login is needed)."""

    def __init__(
        self, registry: str, auth: Union[Login, Callable[[], Login]], secure: bool, timeout: float = 10.0
    ) -> None:
        self.registry = registry
        self.host = api_host(registry)
        self._auth = auth
        self.secure = secure
        self.timeout = timeout
        self._authorization: Dict[str, str] = {}  # by token scope
        self._openers: Dict[bool, urllib.request.OpenerDirector] = {}

    @property
    def auth(self) -> Dict[str, str]:
        """The login ({} when none), looked up once."""
        if callable(self._auth):
            self._auth = self._auth()
        return self._auth or {}

    def _opener(self, verify: bool = True) -> urllib.request.OpenerDirector:
        # Built on first use: loading the system's CA certificates costs ~0.2 s, which a
        # loopback or insecure registry never needs.
        import ssl
        import urllib.request

        if verify not in self._openers:
            if verify:
                context = ssl.create_default_context()
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._openers[verify] = urllib.request.build_opener(
                urllib.request.HTTPSHandler(context=context), _no_redirect_auth()
            )
        return self._openers[verify]

    def _bases(self):
        if self.secure:
            return [("https", True)]
        # An insecure registry (loopback, --insecure-registry) may speak plain HTTP or TLS with
        # a certificate nobody checks; plain HTTP first, as it is the usual case and cheaper.
        return [("http", False), ("https", False)]

    def _send(self, method: str, path: str, headers: Dict[str, str], data: Optional[bytes] = None):
        """(status, headers, body) of one request; tries the schemes the registry allows."""
        import http.client
        import urllib.error
        import urllib.request

        last: Optional[BaseException] = None
        first: Optional[BaseException] = None
        for scheme, verify in self._bases():
            opener = self._opener(verify)
            request = urllib.request.Request(f"{scheme}://{self.host}{path}", method=method, headers=headers, data=data)
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                if error.code == 400 and scheme == "http" and len(self._bases()) > 1:
                    last = error  # "Client sent an HTTP request to an HTTPS server": try TLS
                    continue
                return error.code, error.headers, b""
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                # The first scheme's failure is the one to report: plain HTTP is tried first on
                # an insecure registry, and TLS then fails only because HTTP did.
                first = first or error
                last = error
                continue
        what, transient = describe_failure(first or last or OSError("no answer"), self.timeout)
        where = self.registry if self.host == self.registry else f"{self.registry} ({self.host})"
        raise RegistryError(f"registry {where}: {what}", transient=transient)

    def _request(self, method: str, path: str, headers: Dict[str, str], scope: str, data: Optional[bytes] = None):
        """A request with the login the registry asks for (Basic, or a token for scope)."""
        for _ in range(2):
            authorization = self._authorization.get(scope)
            sent = dict(headers, Authorization=authorization) if authorization else headers
            status, answer, body = self._send(method, path, sent, data)
            if status != 401 or authorization:
                return status, answer, body
            challenge = _challenge(answer.get("WWW-Authenticate", "") if answer else "")
            if challenge["scheme"] == "bearer":
                self._authorization[scope] = self._token(challenge, scope)
            else:
                basic = _basic(self.auth)
                if basic:
                    self._authorization[scope] = basic
            if not self._authorization.get(scope):
                raise RegistryError(
                    f"registry {self.registry} wants a login and the docker config has none "
                    f"for it (docker login {self.registry})",
                    transient=False,
                )
        return status, answer, body

    def _check(self, status: int, what: str) -> None:
        if status in (401, 403):
            raise RegistryError(
                f"registry {self.registry} refused the login from the docker config "
                f"({status}); run docker login {self.registry}",
                transient=False,
            )
        if status >= 500 or status == 429:
            raise RegistryError(f"registry {self.registry} answered {status}", transient=True)
        raise RegistryError(f"registry {self.registry} answered {status} for {what}", transient=False)

    def _token(self, challenge: Dict[str, str], scope: str) -> str:
        import http.client
        import urllib.error
        import urllib.parse
        import urllib.request

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
            with self._opener(verify=self.secure).open(request, timeout=self.timeout) as response:
                body = json.loads(response.read().decode() or "{}")
        except urllib.error.HTTPError as error:
            raise RegistryError(
                f"token service of {self.registry} answered {error.code}", transient=error.code >= 500
            ) from None
        except ValueError:
            raise RegistryError(f"token service of {self.registry} gave an answer that is not JSON", True) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            what, transient = describe_failure(error, self.timeout)
            raise RegistryError(f"token service of {self.registry}: {what}", transient=transient) from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service of {self.registry} gave no token", transient=False)
        return f"Bearer {token}"

    def manifest_digest(self, name: str, reference: str) -> Optional[str]:
        """The digest the registry serves for name:reference (tag or digest), None when absent."""
        status, answer, _ = self._request(
            "HEAD", f"/v2/{name}/manifests/{reference}", {"Accept": MANIFEST_TYPES}, f"repository:{name}:pull"
        )
        if status == 200:
            return (answer.get("Docker-Content-Digest") if answer else None) or None
        if status == 404:
            return None
        self._check(status, f"{name}:{reference}")
        return None

    def image_config(self, name: str, reference: str) -> ImageConfig:
        """The config of the image name:reference names: its digest and labels.

        The manifest names its config blob, whose `config.Labels` are the image's labels;
        an index (several platforms, or BuildKit's attestations) is read through its first
        manifest, the image itself.
        """
        found = self._config(name, reference, missing_ok=False)
        assert found is not None  # missing_ok=False: an absent manifest raised
        return found

    def served_config(self, name: str, digest: str) -> Optional[ImageConfig]:
        """image_config of name@digest, or None when the registry no longer serves that manifest."""
        return self._config(name, digest, missing_ok=True)

    def _config(self, name: str, reference: str, missing_ok: bool) -> Optional[ImageConfig]:
        scope = f"repository:{name}:pull"
        fetched = self._manifest(name, reference, scope, missing_ok)
        if fetched is None:
            return None
        manifest = _json_object(fetched[1], self.registry, f"{name}:{reference}")
        entries = manifest.get("manifests")
        if isinstance(entries, list):
            first = entries[0] if entries and isinstance(entries[0], dict) else {}
            if not first.get("digest"):
                return ImageConfig("", {})
            inner_manifest = self._manifest(name, str(first["digest"]), scope, missing_ok=False)
            assert inner_manifest is not None
            manifest = _json_object(inner_manifest[1], self.registry, f"{name}@{first['digest']}")
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str) or not digest:
            return ImageConfig("", {})
        blob = self._json(f"/v2/{name}/blobs/{digest}", {}, scope, f"{name} config {digest}")
        inner = blob.get("config")
        labels = inner.get("Labels") if isinstance(inner, dict) else None
        found = {str(key): str(value) for key, value in labels.items()} if isinstance(labels, dict) else {}
        return ImageConfig(digest, found)

    def _manifest(self, name: str, reference: str, scope: str, missing_ok: bool) -> Optional[Tuple[str, bytes]]:
        """(media type, bytes) of the manifest name:reference (tag or digest); None when the
        registry serves none and missing_ok. One of a digest is asked once per process
        (_MANIFESTS)."""
        key = (self.host, name, reference)
        if key in _MANIFESTS:
            return _MANIFESTS[key]
        status, answer, body = self._request(
            "GET", f"/v2/{name}/manifests/{reference}", {"Accept": MANIFEST_TYPES}, scope
        )
        if status == 404 and missing_ok:
            return None
        if status != 200:
            self._check(status, f"{name}@{reference}" if reference.startswith("sha256:") else f"{name}:{reference}")
        media_type = (answer.get("Content-Type") if answer else "") or str(
            _json_object(body, self.registry, f"{name}:{reference}").get("mediaType", "")
        )
        _remember_manifest(key, media_type, body)
        return media_type, body

    def _json(self, path: str, headers: Dict[str, str], scope: str, what: str) -> Dict[str, Any]:
        status, _, body = self._request("GET", path, headers, scope)
        if status != 200:
            self._check(status, what)
            return {}
        return _json_object(body, self.registry, what)

    def tag_manifest(self, name: str, digest: str, tag: str) -> None:
        """Give the manifest the registry holds as digest the tag too: PUT its bytes as the tag.

        The bytes are sent back unchanged, so the digest stays the same; no blob moves. They
        are read from the registry unless this process has read them already (a manifest's
        bytes are its digest's for good); a registry that lost the image's blobs since
        refuses the PUT.
        """
        scope = f"repository:{name}:pull,push"
        fetched = self._manifest(name, digest, scope, missing_ok=False)
        assert fetched is not None
        media_type, body = fetched
        status, _, _ = self._request(
            "PUT", f"/v2/{name}/manifests/{tag}", {"Content-Type": media_type}, scope, data=body
        )
        if status not in (200, 201):
            self._check(status, f"{name}:{tag}")


# Manifests by digest, as registries served them: content-addressed (their bytes hash to
# their digest, checked before they are kept), so never stale. Kept for the process, so that
# the build step's look at an image pushed earlier and the push's retag of it read the
# manifest once; bounded.
_MANIFESTS: Dict[Tuple[str, str, str], Tuple[str, bytes]] = {}
_MANIFESTS_LIMIT = 64


def _remember_manifest(key: Tuple[str, str, str], media_type: str, body: bytes) -> None:
    import hashlib

    reference = key[2]
    if not reference.startswith("sha256:") or hashlib.sha256(body).hexdigest() != reference[len("sha256:") :]:
        return  # a tag (it moves), or bytes that are not what the digest names
    if len(_MANIFESTS) >= _MANIFESTS_LIMIT:
        _MANIFESTS.pop(next(iter(_MANIFESTS)), None)
    _MANIFESTS[key] = (media_type, body)


def _json_object(body: bytes, registry: str, what: str) -> Dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise RegistryError(f"registry {registry}: {what} is not JSON", transient=False) from None
    return data if isinstance(data, dict) else {}


def session_without_engine(registry: str, secure: Optional[bool] = None) -> RegistrySession:
    """A session for registry that asks no Docker engine: the docker config's login
    (dockerauth.py), looked up only when the registry asks for one, and TLS unless every
    engine treats the registry as insecure (insecure_by_default).

    A registry this engine alone calls insecure (`--insecure-registry`) then fails the TLS
    handshake; the caller goes through the engine, which knows its own list. Never plain
    HTTP after TLS failed: a recorded verdict could be stale, and would weaken the check.
    `secure` overrides that guess with what an engine at hand says (dockerclient.registry_secure):
    the push through the docker CLI, which finds its own login, uses this session too.
    """
    from pachhook.deliver import dockerauth

    def login() -> Login:
        try:
            return dockerauth.registry_login(registry)
        except dockerauth.LoginUnavailable as error:
            raise RegistryError(str(error), transient=False) from None

    return RegistrySession(registry, login, secure=not insecure_by_default(registry) if secure is None else secure)
