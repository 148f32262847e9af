"""The contract drives the code: it is valid, every operation has a handler and vice versa."""

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

from openapi_spec_validator import validate

import handlers
from app.docs import (
    README,
    TABLE_END,
    TABLE_START,
    build_site,
    embedded_spec_json,
    endpoint_table,
)
from app.main import contract

METHODS = ("get", "put", "post", "delete", "patch")


def operation_ids(document: dict | None = None) -> list[str]:
    return [
        item[method]["operationId"]
        for item in (document or contract())["paths"].values()
        for method in METHODS
        if method in item
    ]


def test_contract_is_valid_openapi_3_0():
    document = contract()
    assert document["openapi"].startswith("3.0.")
    validate(document)


def test_contract_every_operation_id_resolves_to_a_coroutine_handler():
    for operation_id in operation_ids():
        module_name, _, function_name = operation_id.rpartition(".")
        module = importlib.import_module(module_name)
        function = getattr(module, function_name, None)
        assert function is not None, f"{operation_id} resolves to nothing"
        assert inspect.iscoroutinefunction(function), operation_id


def test_contract_every_public_handler_is_bound_by_an_operation_id():
    from app.admin_api import admin_contract

    # handlers/admin.py is bound by openapi/admin.yaml, the rest by the federation contract
    bound = set(operation_ids()) | set(operation_ids(admin_contract()))
    for info in pkgutil.iter_modules(handlers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"handlers.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            assert f"handlers.{info.name}.{name}" in bound, f"handlers.{info.name}.{name}"


def test_contract_every_error_response_is_a_matrix_error():
    for path, item in contract()["paths"].items():
        for method in METHODS:
            for status, response in item.get(method, {}).get("responses", {}).items():
                if "$ref" in response:
                    name = response["$ref"].rsplit("/", 1)[-1]
                    response = contract()["components"]["responses"][name]
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/MatrixError"}, (
                        path,
                        method,
                        status,
                    )


def test_readme_endpoint_table_is_current():
    readme = README.read_text(encoding="utf-8")
    start = readme.index(TABLE_START) + len(TABLE_START)
    current = readme[start : readme.index(TABLE_END)].strip()
    assert current == endpoint_table(), "run `make docs` to regenerate the README table"


def test_docs_site_embeds_the_current_contract(tmp_path: Path):
    index = build_site(tmp_path / "site")
    page = index.read_text(encoding="utf-8")
    assert embedded_spec_json(contract()) in page
    assert "https://" not in page.split("<script id")[0], "no network assets in the page head"
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert (tmp_path / "site" / asset).stat().st_size > 1000
    assert json.loads((tmp_path / "site" / "federation.json").read_text()) == contract()


def test_docs_served_live_only_when_configured(tmp_path: Path):
    from starlette.testclient import TestClient

    from app.config import load_config
    from app.main import create_app

    environ = {"ANTECHAMBER_DATA_DIR": str(tmp_path / "data")}
    with TestClient(create_app(load_config(environ=environ))) as client:
        off = client.get("/_antechamber/docs/")
        assert (off.status_code, off.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    environ["ANTECHAMBER_DOCS_PATH"] = "/_antechamber/docs"
    with TestClient(create_app(load_config(environ=environ))) as client:
        page = client.get("/_antechamber/docs/")
        assert page.status_code == 200
        assert "swagger" in page.text.lower()


# Examples ------------------------------------------------------------------------------------


def _resolved(document: dict, node: object) -> object:
    """``node`` with every local $ref replaced by its target (the contract has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: object = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]  # type: ignore[index]
            return _resolved(document, target)
        return {key: _resolved(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(document, value) for value in node]
    return node


def _examples(document: dict) -> list[tuple[str, dict, object]]:
    """(where, schema, example) for every example beside a schema: parameters, bodies."""
    found = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if "example" in node and "schema" in node:
                found.append((where, _resolved(document, node["schema"]), node["example"]))
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(document["paths"], "paths")
    walk(document["components"]["responses"], "responses")
    return found


def test_contract_every_example_validates_against_its_schema():
    from openapi_schema_validator import OAS30Validator

    examples = _examples(contract())
    assert len(examples) > 10
    for where, schema, example in examples:
        errors = list(OAS30Validator(schema).iter_errors(example))
        assert not errors, (where, [error.message for error in errors])


def _matrix_error_validator():
    from openapi_schema_validator import OAS30Validator

    document = contract()
    return OAS30Validator(_resolved(document, document["components"]["schemas"]["MatrixError"]))


def test_contract_incompatible_room_version_requires_room_version():
    validator = _matrix_error_validator()
    assert not validator.is_valid({"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "x"})
    assert validator.is_valid(
        {"errcode": "M_INCOMPATIBLE_ROOM_VERSION", "error": "x", "room_version": "12"}
    )
    assert validator.is_valid({"errcode": "M_FORBIDDEN", "error": "x"})


def test_contract_knock_room_state_is_never_empty():
    from openapi_schema_validator import OAS30Validator

    document = contract()
    schema = _resolved(document, document["components"]["schemas"]["SendKnockResponse"])
    assert not OAS30Validator(schema).is_valid({"knock_room_state": []})


def _operation(path_prefix: str, method: str) -> dict:
    for path, item in contract()["paths"].items():
        if path.startswith(path_prefix):
            operation: dict = item[method]
            return operation
    raise AssertionError(path_prefix)


def test_contract_example_pdus_are_real_signed_events():
    from matrix.events import (
        check_event_signature,
        compute_event_id,
        compute_room_id_v12,
        is_content_hash_valid,
    )
    from matrix.room_versions import get_room_version
    from scripts.contract_examples import build_examples
    from tests.factories import LOCAL_KEY_SEED, REMOTE_KEY_SEED, make_signing_key

    v12 = get_room_version("12")
    assert v12 is not None
    keys = {
        "knock.example": make_signing_key(LOCAL_KEY_SEED).verify_key,
        "remote.example": make_signing_key(REMOTE_KEY_SEED).verify_key,
    }
    send = _operation("/_matrix/federation/v1/send_knock/", "put")
    make = _operation("/_matrix/federation/v1/make_knock/", "get")
    knock = send["requestBody"]["content"]["application/json"]["example"]
    state = send["responses"]["200"]["content"]["application/json"]["example"]["knock_room_state"]
    template = make["responses"]["200"]["content"]["application/json"]["example"]["event"]
    params = {p["name"]: p["example"] for p in send["parameters"]}
    for pdu in [knock, *state]:
        assert is_content_hash_valid(pdu), pdu["type"]
        server = pdu["origin"]
        check_event_signature(pdu, v12, server, {"ed25519:k1": keys[server]})
    create = next(pdu for pdu in state if pdu["type"] == "m.room.create")
    assert "room_id" not in create
    room_id = compute_room_id_v12(create)
    assert params["roomId"] == room_id == knock["room_id"] == template["room_id"]
    assert {p["name"]: p["example"] for p in make["parameters"]}["roomId"] == room_id
    assert params["eventId"] == compute_event_id(knock, v12)
    assert params["eventId"] not in template["auth_events"]
    join_rules_id = compute_event_id(state[1], v12)
    assert template["prev_events"] == [join_rules_id] == knock["prev_events"]
    # The contract's examples are exactly what the generator produces.
    generated = build_examples()
    assert (knock, state, template) == (
        generated["knock"],
        generated["knock_room_state"],
        generated["template"],
    )


# The admin contract ---------------------------------------------------------------------------


def test_admin_contract_is_valid_openapi_3_0():
    from app.admin_api import admin_contract

    document = admin_contract()
    assert document["openapi"].startswith("3.0.")
    validate(document)


def test_admin_contract_every_operation_id_resolves_to_a_coroutine_handler():
    from app.admin_api import admin_contract

    for operation_id in operation_ids(admin_contract()):
        assert operation_id.startswith("handlers.admin."), operation_id
        function = getattr(
            importlib.import_module("handlers.admin"), operation_id.rpartition(".")[2]
        )
        assert inspect.iscoroutinefunction(function), operation_id


def test_admin_contract_every_operation_needs_the_token_and_errors_are_matrix_errors():
    from app.admin_api import admin_contract

    document = admin_contract()
    assert document["security"] == [{"adminToken": []}]
    assert document["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            assert "security" not in operation, (path, method)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) or status == "default":
                    name = response["$ref"].rsplit("/", 1)[-1]
                    resolved = document["components"]["responses"][name]
                    schema = resolved["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/MatrixError"}, (path, status)


def test_docs_site_has_both_contracts(tmp_path: Path):
    from app.admin_api import admin_contract

    build_site(tmp_path / "site")
    admin_page = (tmp_path / "site" / "admin.html").read_text(encoding="utf-8")
    assert embedded_spec_json(admin_contract()) in admin_page
    assert json.loads((tmp_path / "site" / "admin.json").read_text()) == admin_contract()
