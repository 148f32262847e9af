"""Keep %2F and %25 encoded in the routed path, so ids containing '/' still reach their route.

Starlette routes on the decoded path, where a room id like ``!a/b:x`` (its opaque part may hold
any code point but ':' and NUL, APPX §Room IDs) or a v3 event id (standard base64 has '/') would
split into two segments and give a router 404. This layer rewrites ``scope["path"]`` so those two
escapes stay encoded; path parameters then need one ``unquote`` in the handler. The raw path,
which X-Matrix signs, is untouched.
"""

import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import send_error
from matrix.errors import MatrixError

_KEEP_ENCODED = re.compile(r"(%2[Ff]|%25)")
_KEEP_ENCODED_BYTES = re.compile(rb"%2[Ff]|%25")


def route_path(raw_path: str) -> str:
    """Percent-decode ``raw_path`` except for %2F and %25 (normalised to upper case)."""
    parts = _KEEP_ENCODED.split(raw_path)
    return "".join(part.upper() if index % 2 else unquote(part) for index, part in enumerate(parts))


class EncodedSlashMiddleware:
    """Also the one answer to a trailing slash: Starlette's router would redirect ``/x/`` to
    ``/x`` (307, a Location built from the client's Host header); no Matrix path ends in '/',
    so it is an unknown endpoint, 404 M_UNRECOGNIZED (SS §Unsupported endpoints; issue 21,
    finding 11). Paths under ``exempt_prefix`` (the live docs, which do use '/') are left be."""

    def __init__(self, app: ASGIApp, *, exempt_prefix: str = ""):
        self.app = app
        self.exempt_prefix = exempt_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if (
                len(path) > 1
                and path.endswith("/")
                and not (self.exempt_prefix and path.startswith(self.exempt_prefix))
            ):
                await send_error(send, MatrixError("M_UNRECOGNIZED", "Unrecognized request"))
                return
        raw_path = scope.get("raw_path")
        # Only when there is something to keep: "%21" (room ids' "!") decodes as uvicorn did.
        if scope["type"] == "http" and raw_path and _KEEP_ENCODED_BYTES.search(raw_path):
            scope["path"] = route_path(raw_path.decode("utf-8", "replace"))
        await self.app(scope, receive, send)
