"""The one Matrix error type and the errcode -> HTTP status table (CS §Standard error response)."""

from typing import Any, cast

# The contract's error body, generated (api_types imports only typing: matrix/ stays free of
# web imports). federation.yaml's schema, the one with the extras (room_version,
# retry_after_ms); admin.yaml's names only errcode and error, the same body on the wire.
from api_types.federation import MatrixError as MatrixErrorBody

# CS §Common error codes / SS §Unsupported endpoints. M_UNRECOGNIZED is 404 for an unknown
# endpoint; a known endpoint with the wrong method overrides it with 405 at the raise site.
ERRCODE_STATUS: dict[str, int] = {
    "M_BAD_JSON": 400,
    "M_NOT_JSON": 400,
    "M_MISSING_PARAM": 400,
    "M_INVALID_PARAM": 400,
    "M_INCOMPATIBLE_ROOM_VERSION": 400,
    # joins-v1.yaml / joins-v2.yaml 400 (v1.2): restricted joins this server cannot vouch for
    "M_UNABLE_TO_AUTHORISE_JOIN": 400,
    "M_UNABLE_TO_GRANT_JOIN": 400,
    "M_UNAUTHORIZED": 401,
    # CS §Using access tokens: no token (M_MISSING_TOKEN), or one not recognised (the admin API)
    "M_MISSING_TOKEN": 401,
    "M_UNKNOWN_TOKEN": 401,
    "M_FORBIDDEN": 403,
    "M_NOT_FOUND": 404,
    "M_UNRECOGNIZED": 404,
    "M_TOO_LARGE": 413,
    "M_LIMIT_EXCEEDED": 429,
    "M_UNKNOWN": 500,
}


class MatrixError(Exception):
    """A Matrix error: ``{"errcode", "error", **extra}`` with its HTTP status from the table."""

    def __init__(self, errcode: str, message: str, *, status: int | None = None, **extra: Any):
        super().__init__(f"{errcode}: {message}")
        self.errcode = errcode
        self.message = message
        self.status = status if status is not None else ERRCODE_STATUS.get(errcode, 400)
        self.extra = extra

    def to_json(self) -> MatrixErrorBody:
        body = {"errcode": self.errcode, "error": self.message, **self.extra}
        # errcode and error are always there; the extras are the schema's optional fields the
        # raise sites name (room_version with M_INCOMPATIBLE_ROOM_VERSION, retry_after_ms).
        return cast(MatrixErrorBody, body)
