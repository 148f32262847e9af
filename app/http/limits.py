"""The ASGI edge: an over-long URL is 414 M_TOO_LARGE, and Content-Type is normalised
(any declared type is read as JSON).

Request heads that are too large or too slow never reach ASGI: app/http/server.py refuses them at
the HTTP protocol level. This layer bounds what does reach it, whatever server runs the app.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import send_error
from app.http.scope import request_uri
from matrix.errors import MatrixError


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, max_uri_bytes: int):
        self.app = app
        self.max_uri_bytes = max_uri_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if len(request_uri(scope).encode("latin-1")) > self.max_uri_bytes:
                # RFC 9110 §15.5.15 414 URI Too Long, with the Matrix errcode for "too large".
                error = MatrixError(
                    "M_TOO_LARGE",
                    f"Request URI is longer than {self.max_uri_bytes} bytes",
                    status=414,
                )
                await send_error(send, error)
                return
            _normalise_content_type(scope)
        await self.app(scope, receive, send)


def _normalise_content_type(scope: Scope) -> None:
    """Lower-case the media type of Content-Type (RFC 9110 §8.3.1: it is case-insensitive), and
    read any declared type as JSON.

    Connexion validates ``APPLICATION/JSON`` as JSON but then hands the handler the raw bytes,
    since it picks the body's parser case-sensitively (a 500 the hostile-input corpus found).
    Every body this server accepts is JSON (CS §API standards) and Synapse parses a body as
    JSON whatever its declared type, so ``text/plain`` and the like become ``application/json``:
    a body that is JSON is validated as such, one that is not is still 400 M_NOT_JSON.
    """
    headers = scope["headers"]
    for index, (name, value) in enumerate(headers):
        if name == b"content-type":
            media_type, separator, parameters = value.partition(b";")
            normal = media_type.strip().lower()
            if normal != b"application/json":
                headers[index] = (name, b"application/json")
            elif normal != media_type:
                headers[index] = (name, normal + separator + parameters)
