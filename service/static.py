"""The dashboard's files over plain HTTP: a table of every file made once at start, so no part of a request's
path ever reaches the file system."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.http11 import Response

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "client" / "dashboard"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
                 ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8"}


def http_response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")])
    return Response(status.value, status.phrase, headers, body)


def _dashboard_files() -> dict[str, Path]:
    """Every file the dashboard serves, by URL path, found once: a request's path is only ever looked up here, so
    no client text reaches the file system. Files with a known content type (and the vendored LICENSE) only."""
    files = {}
    for path in sorted(DASHBOARD_DIR.rglob("*")):
        if (path.is_file() and not path.name.startswith(".")
                and (path.suffix in CONTENT_TYPES or path.name == "LICENSE")):
            files["/dashboard/" + path.relative_to(DASHBOARD_DIR).as_posix()] = path
    files["/"] = DASHBOARD_DIR / "index.html"
    # what browsers ask for on any page without an icon link (the 401 page's too)
    files["/favicon.ico"] = DASHBOARD_DIR / "favicon.svg"
    return files


DASHBOARD_FILES = _dashboard_files()


def dashboard_file(path: str) -> Path | None:
    """The dashboard file an HTTP path names (`/` is the page itself, `/favicon.ico` its icon), or None."""
    return DASHBOARD_FILES.get(unquote(path))  # %-escapes that are no UTF-8 become U+FFFD: no file has that name
