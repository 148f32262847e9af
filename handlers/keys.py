"""keys_server.yaml: GET /_matrix/key/v2/server."""

from api_types.federation import ServerKeys
from handlers import _context
from matrix.server_keys import build_server_keys


async def get_server_keys() -> ServerKeys:
    """GET /_matrix/key/v2/server (SS §Publishing Keys)."""
    return build_server_keys(
        _context.server_name(),
        _context.signing_key(),
        _context.old_verify_keys(),
        _context.now_ms(),
    )
