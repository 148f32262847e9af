"""What the outer ASGI layers leave in the scope for the inner ones, and how to read it."""

from dataclasses import dataclass

from starlette.types import Scope

from matrix.canonical import parse_json_object
from matrix.types import JsonDict

# Set by AccessLogMiddleware (outermost): what the access line reports (RequestInfo).
REQUEST_INFO_SCOPE_KEY = "antechamber.request"
# Set by BodyBufferMiddleware: the whole request body, read once (b"" when there is none).
BODY_SCOPE_KEY = "antechamber.body"
# Set on first use by json_body: the body parsed once for both X-Matrix and validation.
JSON_BODY_SCOPE_KEY = "antechamber.json_body"


@dataclass
class RequestInfo:
    """One mutable object per request. Connexion's routing and Swagger layers pass shallow
    copies of the scope on, so a value set in an inner scope is lost to the outer layers; an
    object they all share is not."""

    request_id: str
    origin: str | None = None  # set by the X-Matrix security handler once verified
    # the contract's operationId, once routed (OperationMiddleware, or the fast path)
    operation: str | None = None


def request_info(scope: Scope) -> RequestInfo | None:
    info: RequestInfo | None = scope.get(REQUEST_INFO_SCOPE_KEY)
    return info


def request_uri(scope: Scope) -> str:
    """The request target exactly as sent: raw percent-encoded path, then ``?query``.

    SS §Request Authentication signs this (not the decoded path); the access log prints it.
    """
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    uri = raw_path.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    if query:
        uri += "?" + query.decode("latin-1")
    return uri


def request_id(scope: Scope) -> str:
    info = request_info(scope)
    return "-" if info is None else info.request_id


def has_body(scope: Scope) -> bool:
    return bool(scope.get(BODY_SCOPE_KEY))


def json_body(scope: Scope) -> JsonDict | None:
    """The buffered body as a JSON object (None without a body), parsed once per request.

    CS §API standards: a PUT/POST body is a JSON object; M_NOT_JSON / M_BAD_JSON otherwise.
    """
    if JSON_BODY_SCOPE_KEY not in scope:
        body: bytes = scope.get(BODY_SCOPE_KEY, b"")
        scope[JSON_BODY_SCOPE_KEY] = parse_json_object(body) if body else None
    parsed: JsonDict | None = scope[JSON_BODY_SCOPE_KEY]
    return parsed
