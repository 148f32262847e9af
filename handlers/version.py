"""version.yaml: GET /_matrix/federation/v1/version."""

from importlib.metadata import version

from api_types.federation import ServerVersion

_VERSION = version("antechamber")


async def get_version() -> ServerVersion:
    """GET /_matrix/federation/v1/version (SS §Server implementation)."""
    return {"server": {"name": "Antechamber", "version": _VERSION}}
