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

_KEEP_ENCODED = re.compile(r"(%2[Ff]|%25)")
_KEEP_ENCODED_BYTES = re.compile(rb"%2[Ff]|%25")


def route_path(raw_path: str) -> str:
    """Percent-decode ``raw_path`` except for %2F and %25 (normalised to upper case)."""
    parts = _KEEP_ENCODED.split(raw_path)
    return "".join(part.upper() if index % 2 else unquote(part) for index, part in enumerate(parts))


class EncodedSlashMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path")
        # Only when there is something to keep: "%21" (room ids' "!") decodes as uvicorn did.
        if scope["type"] == "http" and raw_path and _KEEP_ENCODED_BYTES.search(raw_path):
            scope["path"] = route_path(raw_path.decode("utf-8", "replace"))
        await self.app(scope, receive, send)
