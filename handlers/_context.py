"""Typed access to the per-worker state the app's lifespan puts on every request."""

from collections.abc import Callable
from typing import Any

from connexion.context import scope
from signedjson.types import SigningKey

from app.rooms import Resident


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


def now_ms() -> int:
    clock: Callable[[], int] = _state()["clock"]
    return clock()


def resident() -> Resident:
    """The room service's dependencies (app/rooms): store, keyring, outbox, clock."""
    value: Resident = _state()["resident"]
    return value
