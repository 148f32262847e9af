"""The contract drives the code: it is valid, every operation has a handler and vice versa."""

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest
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
from matrix.ids import get_domain

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


def _operation(operation_name: str) -> dict:
    """The operation whose operationId ends with ``.operation_name``, its $refs resolved."""
    document = contract()
    for item in document["paths"].values():
        for method in METHODS:
            operation = item.get(method)
            if operation and operation["operationId"].endswith(f".{operation_name}"):
                resolved: dict = _resolved(document, operation)  # type: ignore[assignment]
                return resolved
    raise AssertionError(operation_name)


def _placed_example(operation: dict, where: str) -> object:
    """An operation's example: ``body``, a response status, or a parameter by name."""
    if where == "body":
        return operation["requestBody"]["content"]["application/json"]["example"]
    if where.isdigit():
        return operation["responses"][where]["content"]["application/json"]["example"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == where]
    return parameter["example"]


def _all_example_values() -> list[object]:
    return [example for _where, _schema, example in _examples(contract())]


def _walk(node: object):
    yield node
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _example_pdus() -> list[dict]:
    """Every signed event anywhere in the contract's examples (each once)."""
    found: dict[str, dict] = {}
    for value in _all_example_values():
        for node in _walk(value):
            if isinstance(node, dict) and "hashes" in node and "signatures" in node:
                found[json.dumps(node, sort_keys=True)] = node
    return list(found.values())


def test_contract_examples_block_is_generated_and_current():
    from scripts.contract_examples import CONTRACT, build_examples, render_block

    assert render_block(build_examples()) in CONTRACT.read_text(encoding="utf-8"), (
        "run `python -m scripts.contract_examples --write`"
    )


def test_contract_every_operation_shows_the_generated_examples():
    from scripts.contract_examples import build_examples

    placements = build_examples().placements
    operations = {name for name, _where in placements}
    # Every operation but version (no event, id or key in it) shows generated examples.
    named = {operation_id.rpartition(".")[2] for operation_id in operation_ids()}
    assert operations == named - {"get_version"}
    for (name, where), expected in placements.items():
        assert _placed_example(_operation(name), where) == expected, (name, where)


def test_contract_example_pdus_are_real_signed_events():
    from matrix.events import (
        check_event_signature,
        compute_event_id,
        compute_room_id_v12,
        is_content_hash_valid,
    )
    from matrix.room_versions import get_room_version
    from tests.factories import LOCAL_KEY_SEED, REMOTE_KEY_SEED, make_signing_key

    v12 = get_room_version("12")
    assert v12 is not None
    keys = {
        "knock.example": {"ed25519:k1": make_signing_key(LOCAL_KEY_SEED).verify_key},
        "remote.example": {"ed25519:k1": make_signing_key(REMOTE_KEY_SEED).verify_key},
    }
    pdus = _example_pdus()
    # create, admin join, power levels, join rules, knock, invite, join, message, refused
    # message, leave: every event of the example room is shown somewhere.
    assert len(pdus) == 10
    (create,) = [pdu for pdu in pdus if pdu["type"] == "m.room.create"]
    # rooms/v12: the create event has no room_id, its id names the room.
    assert "room_id" not in create
    room_id = compute_room_id_v12(create)
    event_ids = set()
    for pdu in pdus:
        assert is_content_hash_valid(pdu), pdu
        assert get_domain(pdu["sender"]) in pdu["signatures"], pdu
        for server in pdu["signatures"]:  # the sender's server and any countersignature
            check_event_signature(pdu, v12, server, keys[server])
        assert pdu.get("room_id", room_id) == room_id
        event_ids.add(compute_event_id(pdu, v12))
    # Every event id and room id the examples name is one of these events' computed ids: no
    # invented id anywhere (parameters, references, answers' keys).
    for value in _all_example_values():
        for node in _walk(value):
            if isinstance(node, str) and node.startswith("$"):
                assert node in event_ids, node
            if isinstance(node, str) and node.startswith("!"):
                assert node == room_id, node


def test_contract_example_ids_in_paths_are_the_bodies_ids():
    from matrix.events import compute_event_id
    from matrix.room_versions import get_room_version

    v12 = get_room_version("12")
    assert v12 is not None
    for name in ("send_knock", "send_join", "send_leave"):
        operation = _operation(name)
        body = _placed_example(operation, "body")
        assert isinstance(body, dict)
        assert _placed_example(operation, "eventId") == compute_event_id(body, v12), name
        assert _placed_example(operation, "roomId") == body["room_id"], name


@pytest.mark.parametrize("name", ["make_knock", "make_join", "make_leave"])
def test_contract_example_templates_pass_the_requesters_checks(name):
    # knocks.yaml / joins-v1.yaml / leaving-v1.yaml: the MUSTs the requesting server checks.
    operation = _operation(name)
    template = _placed_example(operation, "200")["event"]  # type: ignore[index]
    user_id = _placed_example(operation, "userId")
    assert template["room_id"] == _placed_example(operation, "roomId")
    assert template["sender"] == template["state_key"] == user_id
    assert template["type"] == "m.room.member"
    assert template["content"]["membership"] == name.removeprefix("make_")
    assert not {"hashes", "signatures", "unsigned", "event_id"} & set(template)


def test_contract_example_auth_chains_are_closed():
    # joins-v2.yaml / events.yaml / event_auth.yaml: the auth chain holds every auth event of
    # the events it accompanies, recursively; in v12 the create event is an implicit one.
    from matrix.events import compute_event_id
    from matrix.room_versions import get_room_version

    v12 = get_room_version("12")
    assert v12 is not None
    send_join = _placed_example(_operation("send_join"), "200")
    state = _placed_example(_operation("get_state"), "200")
    event_auth = _placed_example(_operation("get_event_auth"), "200")
    join = _placed_example(_operation("send_join"), "body")
    assert isinstance(send_join, dict)
    assert isinstance(state, dict)
    assert isinstance(event_auth, dict)
    cases = [
        ([*send_join["state"], send_join["event"]], send_join["auth_chain"]),
        (state["pdus"], state["auth_chain"]),
        ([join], event_auth["auth_chain"]),
    ]
    for start, chain in cases:
        chain_ids = {compute_event_id(pdu, v12) for pdu in chain}
        (create,) = [pdu for pdu in chain if pdu["type"] == "m.room.create"]
        assert compute_event_id(create, v12) in chain_ids
        for pdu in [*start, *chain]:
            assert set(pdu["auth_events"]) <= chain_ids, pdu["type"]


def test_contract_example_server_keys_are_a_real_self_signed_document():
    from matrix.server_keys import check_key_response
    from scripts.contract_examples import TS
    from tests.factories import LOCAL_KEY_SEED, make_signing_key

    document = _placed_example(_operation("get_server_keys"), "200")
    keys = check_key_response(document, "knock.example", TS)
    local = make_signing_key(LOCAL_KEY_SEED).verify_key
    assert keys["ed25519:k1"].verify_key.encode() == local.encode()
    assert keys["ed25519:k0"].expired_ts is not None


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
