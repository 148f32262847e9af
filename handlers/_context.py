"""Typed access to the per-worker state the app's lifespan puts on every request."""

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from connexion.context import scope
from signedjson.types import SigningKey, VerifyKey

from db.store import Store
from matrix.types import JsonDict


def _state() -> dict[str, Any]:
    # The lifespan state dict straight from the request scope: `connexion.request.state` would
    # build a ConnexionRequest and a State per call (8% of make_knock's time, issue 7).
    state: dict[str, Any] = scope["state"]
    return state


def server_name() -> str:
    name: str = _state()["server_name"]
    return name


def signing_key() -> SigningKey:
    key: SigningKey = _state()["signing_key"]
    return key


def old_verify_keys() -> dict[str, dict[str, Any]]:
    keys: dict[str, dict[str, Any]] = _state()["old_verify_keys"]
    return keys


def store() -> Store:
    value: Store = _state()["store"]
    return value


def now_ms() -> int:
    clock: Callable[[], int] = _state()["clock"]
    return clock()


class EventKeySource(Protocol):
    """The per-worker keyring, as far as handlers need it (app/keyring.py implements it)."""

    async def get_event_verify_keys(
        self, server_name: str, key_ids: Iterable[str], origin_server_ts: int
    ) -> dict[str, VerifyKey]: ...


def keyring() -> EventKeySource:
    value: EventKeySource = _state()["keyring"]
    return value


class PduSender(Protocol):
    """Background delivery of events to other servers (app/federation_sender.py)."""

    def send_pdu(self, destinations: Iterable[str], pdu: JsonDict) -> None: ...


def pdu_sender() -> PduSender:
    value: PduSender = _state()["pdu_sender"]
    return value
