"""transactions.yaml: the transactions other servers push to this one."""

from urllib.parse import unquote

from app.rooms import transactions
from handlers import _context
from matrix.types import JsonDict


async def send_transaction(txnId: str, body: JsonDict, user: str) -> JsonDict:
    """PUT /_matrix/federation/v1/send/{txnId} (transactions.yaml)."""
    return await transactions.receive_transaction(_context.resident(), user, unquote(txnId), body)
