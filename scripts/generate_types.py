"""`make generate`: the TypedDicts of every contract, openapi/NAME.yaml -> api_types/NAME.py.

Each contract's component schemas (request bodies, 200 bodies, error bodies: every body is a
``$ref`` to one, tests/test_wire_types.py checks it) become one module of ``TypedDict``s, made
by datamodel-code-generator and formatted by the project's ruff, under a header naming the
contract and the command. The modules are committed; tests/test_wire_types.py regenerates them
into a temporary directory and fails when a committed one differs.

Usage: ``.venv/bin/python -m scripts.generate_types [--output DIR]`` (default ``api_types/``).
"""

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "openapi"
OUTPUT_DIR = ROOT / "api_types"
BIN = Path(sys.executable).parent

# typing.TypedDict: plain dicts at run time, so handlers keep returning what they returned;
# Literal for enums (no Enum classes on the wire); nested objects named after the schema
# holding them (KnockTemplateContent, not Content1); `nullable: true` is `X | None` (without
# --strict-nullable the field would be typed `str` while the wire carries null).
CODEGEN_OPTIONS = [
    "--input-file-type=openapi",
    "--openapi-scopes=schemas",
    "--output-model-type=typing.TypedDict",
    "--strict-nullable",
    "--target-python-version=3.11",
    "--enum-field-as-literal=all",
    "--naming-strategy=enclosing-model",
    "--use-schema-description",
    "--use-field-description",
    "--disable-timestamp",
    "--no-formatters",
]

HEADER = '''"""Wire types of {contract}, generated: edit the contract, then run `make generate`.

Generated from {contract} by `make generate` (scripts/generate_types.py,
datamodel-code-generator {codegen_version}). Do not edit by hand: tests/test_wire_types.py fails
when this file differs from what the contract generates.
"""'''


def get_contracts() -> list[Path]:
    """Every contract, one module each: openapi/admin.yaml gets api_types/admin.py by itself."""
    return sorted(CONTRACTS_DIR.glob("*.yaml"))


def _run(command: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, check=False, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def generate_module(contract: Path) -> str:
    """The source of the module generated from ``contract``."""
    relative = contract.relative_to(ROOT).as_posix()
    header = HEADER.format(contract=relative, codegen_version=version("datamodel-code-generator"))
    if not yaml.safe_load(contract.read_text()).get("components", {}).get("schemas"):
        # datamodel-codegen refuses a contract without schemas: its module is the header.
        return header + "\n"
    source = _run(
        [
            str(BIN / "datamodel-codegen"),
            f"--input={contract}",
            *CODEGEN_OPTIONS,
            f"--custom-file-header={header}",
        ]
    )
    # Format as if the file were api_types/NAME.py, whatever directory it is written to, so
    # the project's ruff settings (line length, import order) apply.
    filename = f"api_types/{contract.stem}.py"
    ruff = [str(BIN / "ruff")]
    source = _run([*ruff, "check", "--fix", "--quiet", f"--stdin-filename={filename}", "-"], source)
    return _run([*ruff, "format", f"--stdin-filename={filename}", "-"], source)


def generate(output_dir: Path) -> list[Path]:
    """Write one module per contract into ``output_dir``; returns the files written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for contract in get_contracts():
        path = output_dir / f"{contract.stem}.py"
        path.write_text(generate_module(contract))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR)
    for path in generate(parser.parse_args().output):
        print(path)


if __name__ == "__main__":
    main()
