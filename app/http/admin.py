"""The admin listener's edge: the bearer token check, the moderators' page, and the headers
every admin response carries (no caching, no sniffing, no inline script)."""

import logging
import mimetypes
from importlib import resources
from pathlib import Path
from typing import Any

from connexion.lifecycle import ConnexionRequest
from connexion.security import AbstractSecurityHandler
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.admin_token import is_admin_token, read_admin_token
from app.http.errors import send_error
from app.http.scope import request_info
from matrix.errors import MatrixError

logger = logging.getLogger(__name__)

# components.securitySchemes.adminToken in openapi/admin.yaml, as Connexion looks it up.
SECURITY_SCHEME = "bearer"
PAGE_PATH = "/_antechamber/admin/"
_PAGE_FILES = ("index.html", "admin.css", "admin.js")

# On every admin response, API and page alike. The page's script and style are files of its
# own origin; nothing inline runs, whatever text from other servers ends up in the page.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def check_bearer_token(headers: list[tuple[bytes, bytes]], token_path: Path) -> None:
    """CS §Using access tokens, for the admin API: M_MISSING_TOKEN without a bearer token,
    M_UNKNOWN_TOKEN when it is not the one in ``token_path`` (read each time, so a rotated
    token takes effect at once). The token itself is never logged."""
    values = [value for name, value in headers if name == b"authorization"]
    scheme, _, presented = (values[0].decode("latin-1") if values else "").partition(" ")
    presented = presented.strip()
    if len(values) != 1 or scheme.lower() != "bearer" or not presented:
        raise MatrixError("M_MISSING_TOKEN", "Missing admin access token")
    expected = read_admin_token(token_path)
    if expected is None or not is_admin_token(presented, expected):
        raise MatrixError("M_UNKNOWN_TOKEN", "Unrecognised admin access token")


class AdminTokenSecurityHandler(AbstractSecurityHandler):  # type: ignore[misc]  # untyped
    """Connexion security handler for ``{type: http, scheme: bearer}`` in admin.yaml; the
    token file's path comes from the lifespan state."""

    def get_fn(self, security_scheme: dict[str, Any], required_scopes: Any) -> Any:
        async def verify(request: ConnexionRequest) -> dict[str, str]:
            scope = request.scope
            check_bearer_token(scope["headers"], scope["state"]["admin_token_path"])
            info = request_info(scope)
            if info is not None:  # for the access line
                info.origin = "admin"
            return {"sub": "admin"}

        return verify


SECURITY_MAP: dict[str, type[AbstractSecurityHandler]] = {
    SECURITY_SCHEME: AdminTokenSecurityHandler
}


def _page_file(name: str) -> bytes:
    return resources.files("app").joinpath("admin_page", name).read_bytes()


class AdminPageMiddleware:
    """Serves the moderators' page (``/_antechamber/admin/``: HTML, CSS, JS shipped in the
    package, no build step); everything else goes to ``app``. The page holds no data: it asks
    for the token and reads everything through the API."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.files = {name: _page_file(name) for name in _PAGE_FILES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PAGE_PATH.rstrip("/"):
            await self._respond(send, 308, b"", b"text/plain", [(b"location", PAGE_PATH.encode())])
            return
        if not path.startswith(PAGE_PATH) or path.startswith(PAGE_PATH + "v1/"):
            await self.app(scope, receive, send)
            return
        name = path.removeprefix(PAGE_PATH) or "index.html"
        if name not in self.files:
            await send_error(send, MatrixError("M_UNRECOGNIZED", "Unrecognized request"))
            return
        if scope["method"] not in ("GET", "HEAD"):
            error = MatrixError("M_UNRECOGNIZED", "Unrecognized request", status=405)
            await send_error(send, error)
            return
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        body = b"" if scope["method"] == "HEAD" else self.files[name]
        await self._respond(send, 200, body, f"{kind}; charset=utf-8".encode(), [])

    @staticmethod
    async def _respond(
        send: Send, status: int, body: bytes, kind: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every response of the admin listener, errors included."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AllowHeaderMiddleware:
    """RFC 9110 §15.5.6: a 405 lists every method of the resource. Connexion routes each
    (path, method) of the contract apart, so its 405 names only the methods of the first
    route of the path; this layer answers with all of the contract's for that path."""

    def __init__(self, app: ASGIApp, paths: dict[str, list[str]]):
        self.app = app
        self.routes = [
            (
                compile_path(path)[0],
                ", ".join(sorted({m.upper() for m in methods} | _implied(methods))),
            )
            for path, methods in paths.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allow = next(
            (value for regex, value in self.routes if regex.match(scope.get("path", ""))), None
        )

        async def send_with_allow(message: Message) -> None:
            if allow and message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_allow)


def _implied(methods: list[str]) -> set[str]:
    # Starlette answers HEAD wherever it answers GET
    return {"HEAD"} if "get" in methods else set()
