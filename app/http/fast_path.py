"""Compiled routes for the hottest operations: the contract's checks, without Connexion's machinery.

Profiling make_knock (issue 7) showed about 85% of its server time in Connexion's generic layers
(routing, a jsonschema validator built per parameter per request, signature inspection, context
and response decorators) and 13% in the handler. This layer serves the operations it is given
(make_knock) itself, from what it compiled out of the same contract at startup:

- the route regex (Starlette's own ``compile_path``), matched on the path as
  ``EncodedSlashMiddleware`` rewrites it;
- each parameter's schema, checked by a small predicate for the subset the contract uses
  (string/array types, pattern, lengths, item counts, enum) or by jsonschema's validator;
- the operation's security scheme, through the very function Connexion's security layer calls
  (``security_map``), so the X-Matrix signature check and the per-origin rate limit are shared;
- the handler, resolved from the operationId as Connexion resolves it, called with the same
  arguments, in the same Connexion context, its answer serialised as Connexion does;
- with ``validate_responses``, the 200 body checked against the contract's schema.

It only answers requests it is certain Connexion would hand to the handler: a GET with no body,
every parameter present and valid, no parameter the contract does not declare, no comma in an
array value (Connexion re-splits those). Anything else (a missing or invalid parameter, an
unknown path, another method) goes on to Connexion unchanged, so every error is rendered by the
one path that always rendered it. Checks run in Connexion's order: route, security (401/429),
parameters, handler. tests/app/test_fast_path.py runs the same requests through both paths.
"""

import importlib
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from connexion import context as connexion_context
from connexion.lifecycle import ConnexionRequest
from connexion.security import AbstractSecurityHandler
from jsonschema import Draft4Validator
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import JSON_CONTENT_TYPE, internal_error, send_error, send_json
from app.http.scope import request_info
from matrix.errors import MatrixError

logger = logging.getLogger(__name__)

Predicate = Callable[[Any], bool]
# Schema keywords the small predicates implement exactly as JSON Schema draft 4 defines them;
# a schema with any other keyword is checked by jsonschema itself.
_PREDICATE_KEYWORDS = {
    "type",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "items",
    "enum",
    "description",
    "example",
}


class NotCompilable(ValueError):
    """The operation uses something this layer does not reproduce; Connexion serves it."""


def _predicate(schema: dict[str, Any]) -> Predicate:
    """A check equivalent to validating a *string or list of strings* against ``schema``."""
    if set(schema) - _PREDICATE_KEYWORDS or not isinstance(schema.get("items", {}), dict):
        is_valid: Predicate = Draft4Validator(schema).is_valid
        return is_valid
    kind = schema.get("type")
    enum = schema.get("enum")
    if kind == "string":
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        min_length = schema.get("minLength", 0)
        max_length = schema.get("maxLength")

        def check_string(value: Any) -> bool:
            return (
                isinstance(value, str)
                # JSON Schema: "pattern" is not anchored (re.search), lengths count code points.
                and (pattern is None or pattern.search(value) is not None)
                and len(value) >= min_length
                and (max_length is None or len(value) <= max_length)
                and (enum is None or value in enum)
            )

        return check_string
    if kind == "array":
        item = _predicate(schema.get("items", {"type": "string"}))
        min_items = schema.get("minItems", 0)
        max_items = schema.get("maxItems")

        def check_array(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) >= min_items
                and (max_items is None or len(value) <= max_items)
                and (enum is None or value in enum)
                and all(item(entry) for entry in value)
            )

        return check_array
    raise NotCompilable(f"parameter type {kind!r}")


@dataclass(frozen=True)
class _Parameter:
    name: str
    is_array: bool
    required: bool
    check: Predicate


def _parameter(spec: dict[str, Any]) -> _Parameter:
    schema = spec.get("schema", {})
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items", {})
        if items.get("type") != "string":
            raise NotCompilable("array of non-strings")
        if spec.get("style", "form") != "form" or not spec.get("explode", True):
            raise NotCompilable("array not in form/explode style")
    elif kind != "string":
        # Connexion coerces other types from text before validating: not reproduced here.
        raise NotCompilable(f"parameter type {kind!r}")
    if "default" in schema:
        raise NotCompilable("parameter default")
    return _Parameter(spec["name"], kind == "array", bool(spec.get("required")), _predicate(schema))


Handler = Callable[..., Awaitable[Any]]
# Distinct query strings remembered per operation; past this, the memory starts again.
MAX_CACHED_QUERIES = 256
MAX_CACHED_QUERY_BYTES = 1024
SecurityFunction = Callable[[ConnexionRequest], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class CompiledOperation:
    operation_id: str
    path_regex: re.Pattern[str]
    path_parameters: tuple[_Parameter, ...]
    query_parameters: dict[str, _Parameter]
    security: SecurityFunction | None
    handler: Handler
    handler_arguments: frozenset[str]
    response_validator: Draft4Validator | None

    # Query strings checked before and what they gave (None: not for this layer). A server sends
    # the same query every time (make_knock's 12 `ver`), so most requests check none again.
    query_cache: dict[bytes, dict[str, Any] | None] = field(default_factory=dict)

    def parse(self, path_match: re.Match[str], query_string: bytes) -> dict[str, Any] | None:
        """The handler's parameters, or None when Connexion should judge the request."""
        arguments: dict[str, Any] = {}
        for parameter in self.path_parameters:
            value = path_match.group(parameter.name)
            if not parameter.check(value):
                return None
            arguments[parameter.name] = value
        if query_string in self.query_cache:
            query = self.query_cache[query_string]
        else:
            query = self._parse_query(query_string)
            if len(query_string) <= MAX_CACHED_QUERY_BYTES:
                if len(self.query_cache) >= MAX_CACHED_QUERIES:
                    self.query_cache.clear()
                self.query_cache[query_string] = query
        if query is None:
            return None
        # Copies: the handler gets its own lists.
        arguments.update({k: list(v) if isinstance(v, list) else v for k, v in query.items()})
        return {name: value for name, value in arguments.items() if name in self.handler_arguments}

    def _parse_query(self, query_string: bytes) -> dict[str, Any] | None:
        arguments: dict[str, Any] = {}
        values: dict[str, list[str]] = {}
        if query_string:
            for name, value in _parse_query(query_string):
                if name not in self.query_parameters or "," in value:
                    return None
                values.setdefault(name, []).append(value)
        for name, parameter in self.query_parameters.items():
            given = values.get(name)
            if given is None:
                if parameter.required:
                    return None
                continue
            if not parameter.is_array and len(given) != 1:
                return None
            checked: Any = given if parameter.is_array else given[0]
            if not parameter.check(checked):
                return None
            arguments[name] = checked
        return arguments


def _parse_query(query_string: bytes) -> list[tuple[str, str]]:
    """The query's (name, value) pairs exactly as Starlette's QueryParams parse them."""
    text = query_string.decode("latin-1")
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True)
    # Nothing to decode: parse_qsl would only split (and drop empty fields).
    return [(pair.partition("=")[0], pair.partition("=")[2]) for pair in text.split("&") if pair]


def _resolve_handler(operation_id: str) -> Handler:
    # As Connexion's Resolver does: "package.module.function".
    module_name, _, function_name = operation_id.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), function_name)
    if not inspect.iscoroutinefunction(handler):
        raise NotCompilable("handler is not async")
    return handler


def compile_operation(
    spec: Any,
    path: str,
    method: str,
    security_map: dict[str, type[AbstractSecurityHandler]],
    *,
    validate_responses: bool,
) -> CompiledOperation:
    """Compile ``method path`` of the (ref-resolved) contract ``spec``; NotCompilable if the
    operation needs something only Connexion does."""
    operation = spec["paths"][path][method]
    if method != "get" or "requestBody" in operation:
        raise NotCompilable("only GET without a body")
    declared = [*spec["paths"][path].get("parameters", []), *operation.get("parameters", [])]
    path_parameters, query_parameters = [], {}
    for parameter_spec in declared:
        parameter = _parameter(parameter_spec)
        if parameter_spec["in"] == "path":
            if parameter.is_array:
                raise NotCompilable("array path parameter")
            path_parameters.append(parameter)
        elif parameter_spec["in"] == "query":
            query_parameters[parameter.name] = parameter
        else:
            raise NotCompilable(f"{parameter_spec['in']} parameter")
    # Starlette's own regex for the route: the same segments match as in Connexion's router.
    path_regex, _format, convertors = compile_path(path)
    if any(type(convertor).__name__ != "StringConvertor" for convertor in convertors.values()):
        raise NotCompilable("non-string path convertor")

    requirements = operation.get("security", spec.get("security", []))
    security: SecurityFunction | None = None
    if requirements:
        if len(requirements) != 1 or len(requirements[0]) != 1:
            raise NotCompilable("more than one security requirement")
        ((scheme_name, scopes),) = requirements[0].items()
        scheme = spec["components"]["securitySchemes"][scheme_name]
        if scheme.get("type") != "http":
            raise NotCompilable("non-http security scheme")
        handler_class = security_map[scheme["scheme"].lower()]
        security = handler_class().get_fn(scheme, scopes)

    handler = _resolve_handler(operation["operationId"])
    signature = inspect.signature(handler)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        raise NotCompilable("handler takes **kwargs")

    response_validator = None
    content = operation.get("responses", {}).get("200", {}).get("content", {})
    if set(content) != {JSON_CONTENT_TYPE}:
        raise NotCompilable("200 is not only application/json")
    if validate_responses:
        response_validator = Draft4Validator(content[JSON_CONTENT_TYPE].get("schema", {}))
    return CompiledOperation(
        operation_id=operation["operationId"],
        path_regex=path_regex,
        path_parameters=tuple(path_parameters),
        query_parameters=query_parameters,
        security=security,
        handler=handler,
        handler_arguments=frozenset(signature.parameters),
        response_validator=response_validator,
    )


class FastPathMiddleware:
    """Serves the compiled operations; passes everything else to ``app`` (Connexion)."""

    def __init__(self, app: ASGIApp, operations: list[CompiledOperation]):
        self.app = app
        self.operations = operations

    def _match(self, scope: Scope) -> tuple[CompiledOperation, dict[str, Any]] | None:
        if scope["method"] != "GET" or scope.get("root_path"):
            return None
        # EncodedSlashMiddleware (outside this layer) has already kept %2F / %25 encoded.
        path: str = scope["path"]
        for operation in self.operations:
            path_match = operation.path_regex.match(path)
            if path_match is None:
                continue
            for name, value in scope["headers"]:
                # A GET with a body: its signature covers the body; leave it to the full stack.
                if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                    return None
            arguments = operation.parse(path_match, scope.get("query_string", b""))
            return None if arguments is None else (operation, arguments)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self._match(scope) if scope["type"] == "http" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        operation, arguments = matched
        info = request_info(scope)
        if info is not None:
            info.operation = operation.operation_id
        try:
            body = await self._call(operation, arguments, scope, receive)
        except MatrixError as exc:
            await send_error(send, exc)
            return
        except Exception as exc:
            # As app.http.errors.handle_unexpected answers for Connexion.
            await send_error(send, internal_error(scope, exc))
            return
        await send_json(send, 200, body, {})

    async def _call(
        self,
        operation: CompiledOperation,
        arguments: dict[str, Any],
        scope: Scope,
        receive: Receive,
    ) -> bytes:
        handler_context: dict[str, Any] = {}
        if operation.security is not None:
            token_info = await operation.security(ConnexionRequest(scope, receive))
            user = token_info.get("sub", token_info.get("uid"))
            handler_context = {"user": user, "token_info": token_info}
            for name in ("user", "token_info"):
                if name in operation.handler_arguments:
                    arguments[name] = handler_context[name]
        # What Connexion's ContextMiddleware sets, so handlers' `connexion.request` works.
        connexion_context._context.set(handler_context)
        connexion_context._scope.set(scope)
        connexion_context._receive.set(receive)
        result = await operation.handler(**arguments)
        if not isinstance(result, dict):
            raise TypeError(f"{operation.operation_id} must return a JSON object")
        if operation.response_validator is not None and not operation.response_validator.is_valid(
            result
        ):
            logger.error("Response of %s does not match the contract", operation.operation_id)
            # As Connexion's response validation answers (NonConformingResponseBody, a 500).
            raise MatrixError("M_UNKNOWN", "Internal server error", status=500)
        # Connexion's Jsonifier: json.dumps with its defaults, then a newline.
        return (json.dumps(result) + "\n").encode()


def compile_operations(
    spec: Any,
    operation_ids: list[str],
    security_map: dict[str, type[AbstractSecurityHandler]],
    *,
    validate_responses: bool,
) -> list[CompiledOperation]:
    """Compile the named operations; one that cannot be compiled is left to Connexion."""
    compiled = []
    for path, path_item in spec["paths"].items():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or operation.get("operationId") not in operation_ids:
                continue
            try:
                compiled.append(
                    compile_operation(
                        spec, path, method, security_map, validate_responses=validate_responses
                    )
                )
            except NotCompilable as exc:
                logger.warning("%s stays on the full stack: %s", operation["operationId"], exc)
    return compiled
