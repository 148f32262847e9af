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


def operation_ids() -> list[str]:
    return [
        item[method]["operationId"]
        for item in contract()["paths"].values()
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
    bound = set(operation_ids())
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
