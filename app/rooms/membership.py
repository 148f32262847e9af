"""The join and leave handshakes a resident answers (SS §Joining Rooms, §Leaving Rooms)."""

from functools import partial
from typing import cast

from api_types.federation import MakeMembershipResponse, MembershipTemplate, SendJoinResponse
from app.rooms import Resident, hosted, ingest
from matrix.auth_rules import StateKey
from matrix.errors import MatrixError
from matrix.events import sign_event
from matrix.ids import get_domain
from matrix.membership import (
    build_membership_template,
    check_membership_pdu,
    check_restricted_join_allowed,
    check_room_version_supported,
    check_user_on_origin,
    get_join_authoriser,
    get_membership_state_keys,
    get_restricted_allow_room_ids,
)
from matrix.room_events import build_reference_hash
from matrix.room_versions import EventIdFormat, RoomVersion
from matrix.types import JsonDict


def build_make_membership_response(
    resident: Resident,
    room_id: str,
    user_id: str,
    membership: str,
    origin: str,
    supported_versions: list[str] | None = None,
) -> MakeMembershipResponse:
    """make_join (``supported_versions`` = its ``ver``) or make_leave: ``{room_version, event}``.

    Checks in Synapse's order (FederationServer.on_make_join_request and the handler's): room
    resident here (404), the origin's server ACL (403), the room version among ``ver`` (400
    M_INCOMPATIBLE_ROOM_VERSION), the user on the origin (403), a restricted join's
    authorisation (400 / 403), then the auth rules on the template (403).
    """
    store = resident.store
    # The room's version, newest events and state, read once per change of the room.
    head = resident.heads.load_resident_room(store, room_id, resident.server_name)
    room_version = head.room_version
    head.check_origin_acl(store, room_id, origin)
    if supported_versions is not None:
        check_room_version_supported(room_version, supported_versions)
    check_user_on_origin(user_id, origin)
    authoriser = None
    if membership == "join":
        authoriser = _get_restricted_join_authoriser(resident, room_id, room_version, user_id)
    found = head.get_state(
        store, room_id, get_membership_state_keys(user_id, membership, room_version, authoriser)
    )
    prev_events = head.prev_events
    event_hashes = None
    if room_version.event_id_format is EventIdFormat.V1:
        # rooms/v1: a v1/v2 template's references carry each event's reference hash.
        referenced = [event_id for event_id, _ in prev_events]
        referenced += [event_id for event_id, _ in found.values()]
        event_hashes = {
            event_id: build_reference_hash(event, room_version)
            for event_id, event in store.get_accepted_events(referenced).items()
        }
    event = build_membership_template(
        room_version,
        membership,
        room_id=room_id,
        user_id=user_id,
        state={key: event for key, (_, event) in found.items()},
        state_event_ids={key: event_id for key, (event_id, _) in found.items()},
        prev_events=prev_events,
        origin=resident.server_name,
        origin_server_ts=resident.clock(),
        authoriser=authoriser,
        event_hashes=event_hashes,
    )
    # The template of a join or leave (build_membership_template): the MembershipTemplate shape.
    return {"room_version": room_version.identifier, "event": cast(MembershipTemplate, event)}


def _get_restricted_join_authoriser(
    resident: Resident, room_id: str, room_version: RoomVersion, user_id: str
) -> str | None:
    """The local user to name in join_authorised_via_users_server, when the join needs one
    (rooms/v8 rule 4.3.5.2); None when the join rule is not restricted or the user is invited or
    joined. CS §Restricted rooms: the user must be joined to one of the allowed rooms, which
    this server must know to vouch for it."""
    store = resident.store
    keys: list[StateKey] = [
        ("m.room.join_rules", ""),
        ("m.room.power_levels", ""),
        ("m.room.create", ""),
        ("m.room.member", user_id),
    ]
    state = store.get_current_state_events(room_id, keys)
    member = state.get(("m.room.member", user_id))
    membership = member["content"].get("membership") if member is not None else None
    allow = get_restricted_allow_room_ids(room_version, state, membership)
    if allow is None:
        return None
    known = [other for other in allow if store.get_room_version(other) is not None]
    joined = [other for other in known if _is_joined(resident, other, user_id)]
    check_restricted_join_allowed(known, joined)
    candidates = store.get_local_joined_members(room_id, resident.server_name)
    authoriser = get_join_authoriser(room_version, state, candidates)
    if authoriser is None:
        # Synapse: 400 M_UNABLE_TO_GRANT_JOIN "Unable to find a user which could issue an
        # invite" (joins-v1.yaml: try another resident server).
        raise MatrixError("M_UNABLE_TO_GRANT_JOIN", "No user here may authorise this join")
    return authoriser


def _is_joined(resident: Resident, room_id: str, user_id: str) -> bool:
    member = resident.store.get_current_state_event(room_id, "m.room.member", user_id)
    return member is not None and member["content"].get("membership") == "join"


async def accept_membership_pdu(
    resident: Resident,
    room_id: str,
    event_id: str,
    body: JsonDict,
    membership: str,
    origin: str,
) -> tuple[RoomVersion, ingest.AcceptedPdu]:
    """send_join / send_leave v2: the endpoint's checks (joins-v2.yaml, leaving-v2.yaml), then
    the intake, which stores the event and sends it to the room's other servers on the
    sender's behalf (SS §Joining Rooms)."""
    store = resident.store
    # The room's version, newest events and state, read once per change of the room.
    head = resident.heads.load_resident_room(store, room_id, resident.server_name)
    room_version = head.room_version
    head.check_origin_acl(store, room_id, origin)
    countersign = None
    if membership == "join":
        countersign = partial(_countersign_restricted_join, resident, room_id, room_version)
    accepted = await ingest.accept_pdu(
        resident,
        room_id,
        room_version,
        body,
        event_id=event_id,
        origin=origin,
        check_endpoint=partial(
            check_membership_pdu,
            room_version=room_version,
            membership=membership,
            room_id=room_id,
            event_id=event_id,
            origin=origin,
        ),
        countersign=countersign,
    )
    return room_version, accepted


def _countersign_restricted_join(
    resident: Resident, room_id: str, room_version: RoomVersion, event: JsonDict
) -> JsonDict:
    """joins-v2.yaml: when join_authorised_via_users_server names a user of this server, this
    server checks the join is one it would authorise and signs it before persisting it."""
    authoriser = event["content"].get("join_authorised_via_users_server")
    if (
        not room_version.restricted_join_rule
        or not isinstance(authoriser, str)
        or ":" not in authoriser
        or get_domain(authoriser) != resident.server_name
    ):
        return event
    expected = _get_restricted_join_authoriser(resident, room_id, room_version, event["sender"])
    if expected is None:
        # Invited or joined already (or not a restricted room): the authorisation is not needed
        # and this server does not vouch for it; the auth rules judge the join without it.
        return event
    return sign_event(event, room_version, resident.server_name, resident.signing_key)


def build_send_join_response(
    resident: Resident, room_id: str, accepted: ingest.AcceptedPdu
) -> SendJoinResponse:
    """joins-v2.yaml 200: the state before the join, the auth chain of it and of the join, the
    join as stored (with this server's signature), ``members_omitted`` false.

    ``omit_members`` is ignored, as the spec allows (it is a request the resident may decline):
    a full answer makes Synapse do a full join, with no partial-state resync against us
    (lifecycle-digest §3). ``servers_in_room`` is the servers joined before the join.
    """
    store = resident.store
    state_ids = store.get_state_ids_at(accepted.event_id)
    assert state_ids is not None  # the intake stored it
    state = store.get_events_in_order([state_ids[key] for key in sorted(state_ids)])
    room_version = hosted.get_hosted_room_version(store, room_id)
    chain_ids = hosted.get_auth_chain_ids(
        store, room_id, room_version, [*state_ids.values(), accepted.event_id]
    )
    servers = sorted(
        {
            get_domain(event["state_key"])
            for event in state
            if event["type"] == "m.room.member" and event["content"].get("membership") == "join"
        }
    )
    return {
        "state": state,
        "auth_chain": store.get_events_in_order(chain_ids),
        "event": accepted.event,
        "members_omitted": False,
        "servers_in_room": servers,
    }
