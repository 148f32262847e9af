"""The OpenAPI contracts this server serves, parsed once per process (libyaml when present)."""

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

OPENAPI_DIR = Path(__file__).resolve().parent.parent / "openapi"
FEDERATION_CONTRACT = OPENAPI_DIR / "federation.yaml"
ADMIN_CONTRACT = OPENAPI_DIR / "admin.yaml"


@functools.lru_cache(maxsize=8)
def _parse(path: Path, mtime_ns: int) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    return document


def load_contract(path: Path) -> dict[str, Any]:
    """A fresh copy of the parsed document at ``path`` (Connexion and callers may change it).

    Parsing the federation contract with pure-Python YAML took ~0.6 s, paid by every app the
    tests create; it is parsed once per file version instead.
    """
    return copy.deepcopy(_parse(path, path.stat().st_mtime_ns))
