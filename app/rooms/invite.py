"""Invites to users of other servers: built here, countersigned by the invitee's server, then
stored and fanned out (SS §Inviting to a room, invites-v2.yaml)."""

import asyncio
import dataclasses
import logging
import re
from urllib.parse import quote

import httpx

from app.federation.client import FederationClient
from app.rooms.admin import RoomAdmin
from matrix.errors import MatrixError
from matrix.ids import get_domain
from matrix.invite import build_invite_request, parse_invite_response

logger = logging.getLogger(__name__)

# Bounds the whole invite round trip (discovery, TLS, the request, the answer); Synapse gives a
# federation request 60 s, an operator at a prompt should not wait that long.
INVITE_TIMEOUT_S = 30.0
# SS §Size limits: an event is at most 64 KiB; the answer is one event plus a signature.
INVITE_RESPONSE_MAX_BYTES = 256 * 1024
# What of a remote error is repeated to the operator
REMOTE_ERROR_MAX_CHARS = 200
# CS §Standard error response: errcodes are upper-case, namespaced like Java packages
_ERRCODE = re.compile(r"[A-Za-z0-9_.]{1,64}")


async def send_invite(
    admin: RoomAdmin,
    client: FederationClient,
    room_id: str,
    user_id: str,
    *,
    reason: str | None = None,
    sender: str | None = None,
    timeout_s: float = INVITE_TIMEOUT_S,
) -> str:
    """Invite a user of another server; return the invite's event id once stored.

    The order is Synapse's (EventCreationHandler.persist_and_notify_client_events): build and
    sign, PUT /v2/invite to the invitee's server, check its answer is the same event and merge
    its signature, only then store (authorised again) and fan out. Any failure raises
    MatrixError saying what the invitee's server answered, and nothing is stored.
    """
    built = admin.build_invite(room_id, user_id, reason, sender)
    destination = get_domain(built.event["state_key"])
    body = build_invite_request(
        built.event,
        built.room_version,
        admin.get_invite_room_state(room_id, built.event["sender"]),
    )
    path = (
        f"/_matrix/federation/v2/invite/{quote(room_id, safe='')}/{quote(built.event_id, safe='')}"
    )
    try:
        async with asyncio.timeout(timeout_s):
            status, answer = await client.request(
                "PUT", destination, path, body, max_bytes=INVITE_RESPONSE_MAX_BYTES
            )
    except (TimeoutError, httpx.TimeoutException):
        raise MatrixError(
            "M_UNKNOWN",
            f"{destination} did not answer the invite within {timeout_s:g} s",
            status=504,
        ) from None
    except Exception as exc:  # unreachable, TLS, too large, not JSON: the remote's failure
        raise MatrixError(
            "M_UNKNOWN", f"{destination} could not take the invite: {exc}", status=502
        ) from exc
    if status != 200:
        raise _remote_refusal(destination, status, answer)
    try:
        event = parse_invite_response(answer, built.event, destination)
    except MatrixError as exc:
        raise MatrixError(
            "M_UNKNOWN",
            f"{destination} answered the invite with HTTP 200, but {exc.message}",
            status=502,
        ) from None
    event_id = admin.persist_built_event(dataclasses.replace(built, event=event))
    logger.info(
        "Invited %s to %s (%s), countersigned by %s", user_id, room_id, event_id, destination
    )
    return event_id


async def accept_knock(
    admin: RoomAdmin,
    client: FederationClient,
    room_id: str,
    user_id: str,
    *,
    reason: str | None = None,
    sender: str | None = None,
    timeout_s: float = INVITE_TIMEOUT_S,
) -> str:
    """Accept a pending knock by inviting the knocker (SS §Inviting to a room: "invites are
    used to indicate that knocks were accepted"); M_FORBIDDEN when there is none."""
    target = admin.check_pending_knock(room_id, user_id)
    return await send_invite(
        admin, client, room_id, target, reason=reason, sender=sender, timeout_s=timeout_s
    )


def _remote_refusal(destination: str, status: int, answer: object) -> MatrixError:
    """The invitee server's error, passed on: its errcode (when it is one) and, for a 4xx, its
    status, as Synapse passes a remote's error on to the client (to_synapse_error)."""
    errcode = answer.get("errcode") if isinstance(answer, dict) else None
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(errcode, str) or not _ERRCODE.fullmatch(errcode):
        errcode = "M_UNKNOWN"
    text = f"{destination} refused the invite: HTTP {status} {errcode}"
    if isinstance(error, str) and error:
        text += f": {error[:REMOTE_ERROR_MAX_CHARS]}"
    return MatrixError(errcode, text, status=status if 400 <= status < 500 else 502)
