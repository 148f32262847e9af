"""Events a remote's users build on our rooms, and the transactions that carry them (tests)."""

import itertools
from urllib.parse import quote

from matrix.auth_rules import get_auth_event_keys
from matrix.events import compute_event_id, sign_event
from matrix.room_events import build_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import FIXED_NOW_MS
from tests.factories import add_member, create_room
from tests.handlers.knock_env import KnockEnv

_txn_ids = itertools.count()


def remote_event(
    env: KnockEnv,
    room_id: str,
    event_type: str,
    content: dict,
    *,
    state_key: str | None = None,
    sender: str | None = None,
    prev_events: list[str] | None = None,
    version: str = "12",
    signing_key=None,
    remote=None,
    origin_server_ts: int = FIXED_NOW_MS + 20,
    auth_events: list[str] | None = None,
) -> tuple[dict, str]:
    """An event the remote's user builds on our room's current state and extremities
    (``remote``: another server than the environment's, signing it)."""
    room_version = KNOWN_ROOM_VERSIONS[version]
    remote = remote or env.remote
    sender = sender or env.user
    skeleton = {"type": event_type, "sender": sender, "content": content}
    if state_key is not None:
        skeleton["state_key"] = state_key
    found = env.store.get_current_state_events_with_ids(
        room_id, get_auth_event_keys(skeleton, room_version)
    )
    extremities = env.store.get_forward_extremities(room_id)
    event = build_event(
        room_version,
        room_id=room_id,
        sender=sender,
        type=event_type,
        content=content,
        state_key=state_key,
        prev_events=prev_events if prev_events is not None else [e for e, _ in extremities],
        auth_events=auth_events
        if auth_events is not None
        else [event_id for event_id, _ in found.values()],
        depth=max(d for _, d in extremities) + 1,
        origin=remote.server_name,
        origin_server_ts=origin_server_ts,
    )
    signed = sign_event(event, room_version, remote.server_name, signing_key or remote.signing_key)
    return signed, compute_event_id(signed, room_version)


def send_txn(
    env: KnockEnv,
    pdus: list,
    edus: list | None = None,
    txn_id: str | None = None,
    *,
    remote=None,
):
    """PUT /send of ``pdus`` from ``remote`` (default: the environment's remote)."""
    remote = remote or env.remote
    txn_id = txn_id or f"txn{next(_txn_ids)}"
    body: dict = {
        "origin": remote.server_name,
        "origin_server_ts": FIXED_NOW_MS + 30,
        "pdus": pdus,
    }
    if edus is not None:
        body["edus"] = edus
    return env.put(f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}", body, remote=remote)


def joined_room(env: KnockEnv, version: str = "12", join_rule: str = "knock") -> str:
    room_id = create_room(env.admin, version, join_rule)
    add_member(env.admin, room_id, env.user, remote=env.remote)
    return room_id


def message(env: KnockEnv, room_id: str, body: str = "hello", **kw) -> tuple[dict, str]:
    return remote_event(env, room_id, "m.room.message", {"msgtype": "m.text", "body": body}, **kw)
