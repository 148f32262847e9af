"""Which servers an event stored here is sent to (SS §Transactions; Synapse's FederationSender)."""

from collections.abc import Iterable

from matrix.events import get_event_reference_ids
from matrix.ids import get_domain
from matrix.types import JsonDict


def _content(event: JsonDict) -> JsonDict:
    content = event.get("content")
    return content if isinstance(content, dict) else {}


def is_rescinded_invite(event: JsonDict, target_member_before: tuple[str, JsonDict] | None) -> bool:
    """Whether ``event`` withdraws an invite: a leave sent by someone other than its target
    whose auth_events hold the target's current membership, an invite.

    The spec is silent; this is Synapse's FederationSender handle_event (v1.139, PR #18823): a
    kick or an unban is not sent to the target's server, a rescinded invite is (a ban is not a
    leave, so it never is). ``target_member_before`` is (event id, event) of the target's
    m.room.member in the state before ``event``, or None.
    """
    if event.get("type") != "m.room.member" or target_member_before is None:
        return False
    state_key = event.get("state_key")
    if _content(event).get("membership") != "leave" or event.get("sender") == state_key:
        return False
    invite_id, invite = target_member_before
    return _content(invite).get("membership") == "invite" and invite_id in get_event_reference_ids(
        event.get("auth_events")
    )


def get_event_destinations(
    event: JsonDict,
    joined_servers_before: Iterable[str],
    *,
    server_name: str,
    origin: str | None = None,
    target_member_before: tuple[str, JsonDict] | None = None,
) -> list[str]:
    """The servers to send ``event`` to, sorted: never this server, never ``origin``.

    Synapse's rule (the spec says only "servers in the room"): the servers with a joined user in
    the state *before* the event, so a kicked or banned user's server hears of it; plus the
    invitee's server when the event rescinds its invite (is_rescinded_invite).
    """
    destinations = set(joined_servers_before)
    if is_rescinded_invite(event, target_member_before):
        destinations.add(get_domain(str(event["state_key"])))
    destinations -= {server_name}
    if origin is not None:
        destinations.discard(origin)
    return sorted(destinations)
