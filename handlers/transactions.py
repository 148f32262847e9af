"""transactions.yaml: the transactions other servers push to this one."""

from typing import cast
from urllib.parse import unquote

from api_types.federation import Transaction, TransactionResponse
from app.rooms import transactions
from handlers import _context
from handlers._json import as_json_dict


async def send_transaction(txnId: str, body: Transaction, user: str) -> TransactionResponse:
    """PUT /_matrix/federation/v1/send/{txnId} (transactions.yaml)."""
    response = await transactions.receive_transaction(
        _context.resident(), user, unquote(txnId), as_json_dict(body)
    )
    # {"pdus": {event_id: {} | {"error": ...}}}, or a replay of one as stored.
    return cast(TransactionResponse, response)
