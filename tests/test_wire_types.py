"""The generated wire types: current with the contracts, a type for every body, and mypy bites."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.generate_types import OUTPUT_DIR, ROOT, generate, get_contracts

METHODS = ("get", "put", "post", "delete", "patch")


def test_wire_types_committed_modules_match_the_contracts(tmp_path: Path):
    # A contract changed without `make generate` (or a hand edit of api_types/) fails here.
    generated = {path.name: path.read_text() for path in generate(tmp_path)}
    committed = {
        path.name: path.read_text()
        for path in OUTPUT_DIR.glob("*.py")
        if path.name != "__init__.py"
    }
    assert sorted(committed) == sorted(generated), "run `make generate` (one module per contract)"
    for name, source in generated.items():
        assert committed[name] == source, f"api_types/{name} is stale: run `make generate`"


@pytest.mark.parametrize("contract", get_contracts(), ids=lambda path: path.name)
def test_wire_types_every_json_body_is_a_named_component_schema(contract: Path):
    # Only components.schemas are generated (one readable name each); an inline body would
    # get no type, so every request and response body must be a $ref to one.
    document = yaml.safe_load(contract.read_text())
    responses = document.get("components", {}).get("responses", {})
    inline = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            operation = item[method]
            bodies = {"requestBody": operation.get("requestBody", {})}
            for status, response in operation.get("responses", {}).items():
                if "$ref" in response:
                    response = responses[response["$ref"].rpartition("/")[2]]
                bodies[status] = response
            for where, body in bodies.items():
                for media_type in body.get("content", {}).values():
                    if not media_type["schema"].get("$ref", "").startswith("#/components/schemas/"):
                        inline.append(f"{method.upper()} {path} {where}")
    assert inline == []


def test_wire_types_mypy_reports_a_handler_returning_a_wrong_shape(tmp_path: Path):
    # The check is known to bite: the project's mypy config on a fixture whose handlers
    # return bodies the contract forbids reports each of them, and nothing else.
    fixture = ROOT / "tests" / "fixtures" / "mypy_wrong_return.py"
    expected = [
        number
        for number, line in enumerate(fixture.read_text().splitlines(), start=1)
        if line.endswith("# mypy: error")
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file=pyproject.toml",
            f"--cache-dir={tmp_path}",
            "--no-error-summary",
            "tests/fixtures/mypy_wrong_return.py",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    reported = sorted(
        {int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line}
    )
    assert reported == expected, result.stdout
