"""The one error renderer: every failure, Connexion's and Starlette's included, as Matrix JSON."""

import json
import logging
import typing as t

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import (
    BadRequestProblem,
    ProblemException,
    UnsupportedMediaTypeProblem,
)
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.validators import JSONRequestBodyValidator, ParameterValidator
from jsonschema import ValidationError
from starlette.exceptions import HTTPException
from starlette.types import Send

from app.http.scope import has_body, json_body, request_id
from matrix.errors import MatrixError

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"


def render_error(error: MatrixError) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and extra headers for ``error`` (CS §Standard error response)."""
    headers: dict[str, str] = {}
    payload = error.to_json()
    retry_after_ms = payload.get("retry_after_ms")
    if error.errcode == "M_LIMIT_EXCEEDED" and isinstance(retry_after_ms, int):
        # CS §Rate limiting: SHOULD send Retry-After (seconds, rounded up).
        headers["Retry-After"] = str(max(1, -(-retry_after_ms // 1000)))
    if error.status in (408, 413, 414):
        # The rest of the request may still be arriving: close rather than read it all.
        headers["Connection"] = "close"
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return error.status, body, headers


def internal_error(scope: t.Any, exc: BaseException) -> MatrixError:
    """Log an unexpected exception with the request id; the 500 that names that id."""
    rid = request_id(scope)
    logger.error("Unhandled error in request %s: %r", rid, exc, exc_info=exc)
    return MatrixError("M_UNKNOWN", f"Internal server error (request {rid})")


async def send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    """A JSON response straight on the ASGI channel (layers outside Connexion)."""
    raw_headers = [
        (b"content-type", JSON_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: MatrixError) -> None:
    await send_json(send, *render_error(error))


def _response(error: MatrixError) -> ConnexionResponse:
    status, body, headers = render_error(error)
    return ConnexionResponse(
        status_code=status, body=body, mimetype=JSON_CONTENT_TYPE, headers=headers
    )


def handle_matrix_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, MatrixError)
    return _response(exc)


def matrix_error_for_problem(exc: ProblemException) -> MatrixError:
    """Connexion's own problems (raised before our validators run) as Matrix errors."""
    if isinstance(exc, UnsupportedMediaTypeProblem):
        return MatrixError("M_NOT_JSON", "Content-Type must be application/json")
    if isinstance(exc, BadRequestProblem):
        return MatrixError("M_BAD_JSON", str(exc.detail or "Bad request"))
    if exc.status == 401:
        return MatrixError("M_UNAUTHORIZED", str(exc.detail or "Unauthorized"))
    if exc.status == 403:
        return MatrixError("M_FORBIDDEN", str(exc.detail or "Forbidden"))
    if exc.status < 500:
        return MatrixError("M_UNKNOWN", str(exc.detail or exc.title), status=exc.status)
    logger.error("Connexion problem %r", exc)
    return MatrixError("M_UNKNOWN", "Internal server error", status=exc.status)


def handle_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, ProblemException)
    return _response(matrix_error_for_problem(exc))


def matrix_error_for_http_exception(exc: HTTPException) -> MatrixError:
    # SS §Unsupported endpoints: unknown endpoint 404, known endpoint with wrong method 405,
    # both M_UNRECOGNIZED.
    if exc.status_code in (404, 405):
        return MatrixError("M_UNRECOGNIZED", "Unrecognized request", status=exc.status_code)
    return MatrixError("M_UNKNOWN", str(exc.detail), status=exc.status_code)


def handle_http_exception(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, HTTPException)
    response = _response(matrix_error_for_http_exception(exc))
    # RFC 9110 §15.5.6: a 405 lists the allowed methods.
    if exc.headers and "allow" in {k.lower() for k in exc.headers}:
        response.headers.update(exc.headers)
    return response


def handle_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    return _response(internal_error(request.scope, exc))


class MatrixParameterValidator(ParameterValidator):  # type: ignore[misc]
    """Connexion's parameter validation, raising M_MISSING_PARAM / M_INVALID_PARAM."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: t.Any, param: dict[str, t.Any], param_name: str | None = None
    ) -> str | None:
        error: str | None = ParameterValidator.validate_parameter(
            parameter_type, value, param, param_name
        )
        if error is None:
            return None
        name = param.get("name", param_name)
        if value is None or value == []:
            raise MatrixError("M_MISSING_PARAM", f"Missing {parameter_type} parameter '{name}'")
        raise MatrixError("M_INVALID_PARAM", f"Invalid {parameter_type} parameter '{name}'")


class MatrixJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Request bodies: M_NOT_JSON when not JSON, M_BAD_JSON when JSON of the wrong shape."""

    async def wrap_receive(self, receive: t.Any, *, scope: t.Any) -> t.Any:
        # Connexion refuses a body without Content-Length (chunked) or with 0 before parsing;
        # judge by the body BodyBufferMiddleware read: an empty one is not JSON (M_NOT_JSON).
        if self._required and not has_body(scope):
            raise MatrixError("M_NOT_JSON", "Request body must be a JSON object")
        return await super().wrap_receive(receive, scope=scope)

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope: t.Any) -> t.Any:
        async for _ in stream:  # drained for Connexion's replay; the body is in the scope
            pass
        # CS §API standards: every PUT/POST body is a JSON object (duplicate keys, NaN refused);
        # the X-Matrix check has usually parsed it already.
        return json_body(scope)

    def _validate(self, body: t.Any) -> dict[str, t.Any] | None:
        if body is None:
            raise MatrixError("M_NOT_JSON", "Request body must be a JSON object")
        try:
            self._validator.validate(body)
        except ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "body"
            raise MatrixError("M_BAD_JSON", f"Invalid JSON at {where}: {exc.message}") from None
        return None


VALIDATOR_MAP: dict[str, t.Any] = {
    "parameter": MatrixParameterValidator,
    "body": MediaTypeDict({"*/*json": MatrixJSONBodyValidator}),
}
