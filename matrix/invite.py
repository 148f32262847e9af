"""Invites to a user of another server (SS §Inviting to a room, invites-v2.yaml): the state sent
with the invite and the check of the invitee server's countersigned answer."""

from collections.abc import Sequence

from matrix.auth_rules import CREATE_KEY, JOIN_RULES_KEY, StateKey
from matrix.errors import MatrixError
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

# A countersignature is one server's {key id: signature}; a few keys at most (key rotation).
MAX_COUNTERSIGNATURE_KEYS = 10


def get_invite_room_state_keys(inviter: str) -> list[StateKey]:
    """The state keys of ``invite_room_state``, in order.

    invites-v2.yaml (v1.16, MSC4311): it MUST contain the m.room.create event. The rest is
    Synapse's _DEFAULT_PREJOIN_STATE_TYPES_AND_STATE_KEYS (the spec only suggests "stripped
    state" such as these): join rules, alias, avatar, name, encryption and the inviter's member.
    """
    return [
        CREATE_KEY,
        JOIN_RULES_KEY,
        ("m.room.canonical_alias", ""),
        ("m.room.avatar", ""),
        ("m.room.name", ""),
        ("m.room.encryption", ""),
        ("m.room.member", inviter),
    ]


def build_invite_request(
    event: JsonDict, room_version: RoomVersion, invite_room_state: Sequence[JsonDict]
) -> JsonDict:
    """The body of PUT /_matrix/federation/v2/invite/{roomId}/{eventId}.

    invites-v2.yaml (v1.16): every invite_room_state entry is a full PDU "formatted according to
    the room version specification" (receivers SHOULD reject others in v12).
    """
    return {
        "room_version": room_version.identifier,
        "event": event,
        "invite_room_state": list(invite_room_state),
    }


def _without_signatures(event: JsonDict) -> JsonDict:
    return {key: value for key, value in event.items() if key not in ("signatures", "unsigned")}


def parse_invite_response(body: object, sent: JsonDict, invitee_server: str) -> JsonDict:
    """``sent`` with the invitee server's signatures added, from its 200 answer ``body``.

    invites-v2.yaml: the answer is ``{"event": <the same event, signed by the invited server>}``.
    Synapse's FederationClient.send_invite checks the returned event is the one it sent and
    EventCreationHandler merges ``returned_invite.signatures``. Here everything but signatures
    and unsigned must be identical (so the event id, computed from a subset, is the same), and
    only the invitee server's entry is taken: it can neither change nor drop our signature.
    Raises M_INVALID_PARAM otherwise.
    """
    event = body.get("event") if isinstance(body, dict) else None
    if not isinstance(event, dict):
        raise MatrixError("M_INVALID_PARAM", "the answer carries no event")
    if _without_signatures(event) != _without_signatures(sent):
        raise MatrixError("M_INVALID_PARAM", "the answer carries a different event")
    signatures = event.get("signatures")
    theirs = signatures.get(invitee_server) if isinstance(signatures, dict) else None
    if (
        not isinstance(theirs, dict)
        or not 0 < len(theirs) <= MAX_COUNTERSIGNATURE_KEYS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in theirs.items())
    ):
        raise MatrixError("M_INVALID_PARAM", f"the event is not signed by {invitee_server}")
    merged = dict(sent)
    # ours last: an entry for this server in the answer never replaces our own signature
    merged["signatures"] = {invitee_server: dict(theirs), **sent["signatures"]}
    return merged
