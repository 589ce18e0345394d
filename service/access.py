"""Who may use the server and what they may point it at: the sources clients may start (`SourcePolicy`), the
host names, origins and token a request must present and the per-client limits (`Access`), and the request rate
(`RateLimit`)."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, urlsplit

from protocol import MediaFile, quoted
from stream.sources import SourceError, redact_url

MAX_MEDIA_LISTED = 500  # files a `list_media` reply names at most
MAX_STREAMS = 16  # streams a server runs at once (--max-streams)


class SourcePolicy:
    """Which sources clients may start: files inside one media folder (no traversal, no symlinks out) and RTSP URLs
    on allow-listed hosts."""

    def __init__(self, media_dir: str | Path | None = None, rtsp_hosts: list[str] | None = None):
        self.media_dir = Path(media_dir).resolve() if media_dir else None
        # "host" allows any port on that host, "host:port" only that port
        self.rtsp_hosts = {self._host_port(h) for h in (rtsp_hosts or [])}

    @staticmethod
    def _host_port(spec: str) -> tuple[str, int | None]:
        parts = urlsplit(spec if "//" in spec else f"rtsp://{spec}")
        return (parts.hostname or "").lower(), parts.port

    def rtsp_allowed(self, url: str) -> bool:
        try:
            host, port = self._host_port(url)
        except ValueError:  # a port that is not a number
            return False
        default_port = 322 if urlsplit(url).scheme.lower() == "rtsps" else 554  # FFmpeg's defaults, as it connects
        return (host, None) in self.rtsp_hosts or (host, port or default_port) in self.rtsp_hosts

    def resolve(self, spec: str) -> str:
        try:
            scheme = urlsplit(spec).scheme.lower()
        except ValueError:  # "//[": an unclosed IPv6 bracket
            raise SourceError("not_allowed", "that is not a usable file name or rtsp:// URL") from None
        if scheme in ("rtsp", "rtsps"):
            if not self.rtsp_allowed(spec):
                raise SourceError("not_allowed", f"RTSP host of {redact_url(spec)} is not on the server's allow-list")
            return spec
        if scheme and len(scheme) > 1:
            raise SourceError("not_allowed", f"source scheme {quoted(scheme)} is not allowed")
        if self.media_dir is None:
            raise SourceError("not_allowed", "this server has no media folder: start it with --media-dir")
        relative = self.relative_path(spec)
        try:
            path = (self.media_dir / relative).resolve()
        except (ValueError, OSError):  # a name too long, a loop of links
            raise SourceError("not_allowed", "that is not a usable file name") from None
        if not path.is_relative_to(self.media_dir):  # a link inside the folder that leads out of it
            raise SourceError("not_allowed", f"{quoted(spec)} is outside the server's media folder")
        return str(path)

    @staticmethod
    def relative_path(spec: str) -> PurePosixPath:
        """A client's file path, judged on its text alone (so no answer depends on what lies outside the folder):
        relative, without `..`, hidden parts or control characters, as `list_media` names files."""
        if not spec or any(not c.isprintable() for c in spec) or "\\" in spec:
            raise SourceError("not_allowed", "that is not a usable file name")
        path = PurePosixPath(spec)
        if path.is_absolute():
            raise SourceError("not_allowed", "give a path relative to the server's media folder (as list_media "
                                             "names it), not an absolute one")
        if any(part == ".." for part in path.parts):
            raise SourceError("not_allowed", "'..' is not allowed in a media path")
        if any(part.startswith(".") for part in path.parts):
            raise SourceError("not_allowed", "hidden files and folders are not served")
        if any(len(part.encode()) > 255 for part in path.parts) or len(spec) > 1024:
            raise SourceError("not_allowed", "that is not a usable file name")
        return path

    def list_media(self, limit: int = MAX_MEDIA_LISTED) -> tuple[list[MediaFile], bool]:
        """The files a client may start ([{path, size}] relative to the media folder, sorted) and whether the list
        was cut at `limit`. Hidden files and links that lead out of the folder are left out."""
        if self.media_dir is None:
            return [], False
        found: list[MediaFile] = []
        for folder, dirs, files in os.walk(self.media_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(folder, name)
                if name.startswith(".") or not path.resolve().is_relative_to(self.media_dir) or not path.is_file():
                    continue
                found.append({"path": path.relative_to(self.media_dir).as_posix(), "size": path.stat().st_size})
                if len(found) > limit:
                    return found[:limit], True
        return found, False


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
TOKEN_COOKIE = "vidsent_token"
STOP_POLICIES = ("anyone", "starter")


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def request_host(request) -> str | None:
    """The host name of a request's `Host` header, lower case, without port or brackets (None: none or unreadable)."""
    header = request.headers.get("Host")
    if not header:
        return None
    try:
        host = urlsplit(f"//{header}").hostname
    except ValueError:  # a port that is not a number, an unclosed bracket
        return None
    return host.rstrip(".") if host else None


@dataclass
class Access:
    """Who may use the server and how much: a shared token (None: no authentication, loopback only unless the
    operator said --insecure), browser origins besides the server's own, and per-client limits."""

    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_clients: int = 64
    max_client_streams: int = 4  # streams one client may have started and still running
    max_requests_per_s: float = 20.0  # sustained; bursts of twice that are let through
    bind_host: str = "127.0.0.1"  # the address the server listens on (serve_forever sets it)
    allowed_hosts: tuple[str, ...] = ()  # --allow-host: names the server is reached by, besides its address
    stop_policy: str = "anyone"  # "starter": while its starting client is connected, only that client stops a stream

    def host_allowed(self, request) -> bool:
        """Whether the request's `Host` names this server. A page whose name re-resolves to this machine (DNS
        rebinding) sends its own name as Host, so only the names the server is really reached by pass: loopback
        names and addresses on loopback; the bound address (any address of this machine's when bound to all of
        them, and loopback) and --allow-host names otherwise."""
        host = request_host(request)
        if host is None:
            return False
        if host in (h.lower().rstrip(".") for h in self.allowed_hosts):
            return True
        bound = self.bind_host.strip("[]").lower()
        if is_loopback(bound):
            return is_loopback(host)
        if bound in ANY_ADDRESS:
            if is_loopback(host):
                return True
            try:  # an address literal cannot be re-bound to another name: it is this machine's if it reached us
                ipaddress.ip_address(host.strip("[]"))
                return True
            except ValueError:
                return False
        return host.strip("[]") == bound

    def token_of(self, request) -> str | None:
        """The token a request presents: `Authorization: Bearer …`, `?token=…` or the dashboard's cookie."""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        query = parse_qs(urlsplit(request.path).query).get("token")
        if query:
            return query[0]
        cookie = SimpleCookie()
        try:
            cookie.load(request.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return None
        return cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else None

    def authorised(self, request) -> bool:
        if self.token is None:
            return True
        given = self.token_of(request)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def origin_allowed(self, request) -> bool:
        """A browser's websocket must come from a page of this server (same host:port) or an --allow-origin; a
        client that sends no Origin (not a browser) is judged by the token alone."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if origin.rstrip("/") in self.allowed_origins:
            return True
        return urlsplit(origin).netloc.lower() == request.headers.get("Host", "").lower()


def resolve_token(host: str, token: str | None, insecure: bool) -> tuple[str | None, bool]:
    """(the token to require, whether it was generated here). Off loopback the server never runs without one
    unless --insecure was given: it makes one up and prints it once."""
    if token is not None and not token.strip():
        raise ValueError("an empty --token (or VIDSENT_TOKEN) would let anyone in: give a real one, or none on "
                         "loopback")
    if token:
        return token, False
    if host in LOOPBACK_HOSTS or insecure:
        return None, False
    return secrets.token_urlsafe(24), True


class RateLimit:
    """A token bucket: `rate` requests a second sustained, bursts of twice that."""

    def __init__(self, rate: float):
        self.rate, self.capacity = rate, max(1.0, 2 * rate)
        self.tokens, self.stamp = self.capacity, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
