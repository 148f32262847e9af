"""version.yaml: GET /_matrix/federation/v1/version."""

from importlib.metadata import version

from matrix.types import JsonDict

_VERSION = version("antechamber")


async def get_version() -> JsonDict:
    """GET /_matrix/federation/v1/version (SS §Server implementation)."""
    return {"server": {"name": "Antechamber", "version": _VERSION}}
