"""Event hashing, redaction, reference hashes, event ids and signatures (SS §Signing Events)."""

import copy
import hashlib
from collections.abc import Mapping

from nacl.exceptions import CryptoError
from signedjson.sign import sign_json
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64, encode_base64

from matrix.canonical import encode_canonical_json
from matrix.errors import MatrixError
from matrix.room_versions import V12, EventIdFormat, RedactionRules, RoomVersion
from matrix.types import JsonDict

# frag/v1-redactions: top-level keys that survive redaction in room versions 1-10.
_V1_TOP_LEVEL_KEYS = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# frag/v11-redactions: origin, membership and prev_state are no longer protected.
_V11_TOP_LEVEL_KEYS = _V1_TOP_LEVEL_KEYS - {"origin", "membership", "prev_state"}

_TOP_LEVEL_KEYS: dict[RedactionRules, frozenset[str]] = {
    RedactionRules.V1: _V1_TOP_LEVEL_KEYS,
    RedactionRules.V6: _V1_TOP_LEVEL_KEYS,
    RedactionRules.V8: _V1_TOP_LEVEL_KEYS,
    RedactionRules.V9: _V1_TOP_LEVEL_KEYS,
    RedactionRules.V11: _V11_TOP_LEVEL_KEYS,
}

ContentKeys = dict[str, frozenset[str]]

# frag/v1-redactions: content keys kept per event type; every other type keeps no content.
_V1_CONTENT_KEYS: ContentKeys = {
    "m.room.member": frozenset({"membership"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule"}),
    "m.room.power_levels": frozenset(
        {
            "ban",
            "events",
            "events_default",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        }
    ),
    "m.room.aliases": frozenset({"aliases"}),
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
# frag/v6-redactions: m.room.aliases content is no longer protected.
_V6_CONTENT_KEYS: ContentKeys = {k: v for k, v in _V1_CONTENT_KEYS.items() if k != "m.room.aliases"}
# rooms/v8: join_rules keeps "allow" (restricted rooms).
_V8_CONTENT_KEYS: ContentKeys = {
    **_V6_CONTENT_KEYS,
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
}
# frag/v9-redactions: member keeps "join_authorised_via_users_server".
_V9_CONTENT_KEYS: ContentKeys = {
    **_V8_CONTENT_KEYS,
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
}
# frag/v11-redactions: power_levels keeps "invite"; m.room.redaction keeps "redacts". The create
# event's whole content and member third_party_invite.signed are handled in _redact_content.
_V11_CONTENT_KEYS: ContentKeys = {
    **_V9_CONTENT_KEYS,
    "m.room.power_levels": _V9_CONTENT_KEYS["m.room.power_levels"] | {"invite"},
    "m.room.redaction": frozenset({"redacts"}),
}

_CONTENT_KEYS: dict[RedactionRules, ContentKeys] = {
    RedactionRules.V1: _V1_CONTENT_KEYS,
    RedactionRules.V6: _V6_CONTENT_KEYS,
    RedactionRules.V8: _V8_CONTENT_KEYS,
    RedactionRules.V9: _V9_CONTENT_KEYS,
    RedactionRules.V11: _V11_CONTENT_KEYS,
}


def _strip_unsigned_and_signatures(event: Mapping[str, object]) -> JsonDict:
    return {k: v for k, v in event.items() if k not in ("signatures", "unsigned")}


def _content_hash_digest(event: Mapping[str, object]) -> bytes:
    # SS §Calculating the content hash: drop unsigned, signatures and hashes, then sha256 of
    # the canonical JSON of what is left.
    rest = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(rest)).digest()


def compute_content_hash(event: Mapping[str, object]) -> str:
    """The unpadded standard base64 sha256 content hash of ``event``."""
    # APPX §Unpadded Base64: hashes always use the standard alphabet.
    return encode_base64(_content_hash_digest(event))


def add_content_hash(event: Mapping[str, object]) -> JsonDict:
    """A copy of ``event`` with ``hashes.sha256`` set (SS §Adding hashes and signatures)."""
    result = dict(event)
    hashes = event.get("hashes")
    # Keep any other algorithms' hashes, as Synapse does; only sha256 is defined.
    new_hashes = dict(hashes) if isinstance(hashes, Mapping) else {}
    new_hashes["sha256"] = compute_content_hash(event)
    result["hashes"] = new_hashes
    return result


def is_content_hash_valid(event: Mapping[str, object]) -> bool:
    """Whether ``hashes.sha256`` matches the recomputed content hash (SS §Validating hashes)."""
    hashes = event.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    # APPX §Unpadded Base64: accept the hash with or without padding. Comparing text rather than
    # decoded bytes refuses stray characters that a lenient base64 decoder would skip.
    return claimed.rstrip("=") == compute_content_hash(event)


def _redact_content(event_type: object, content: object, rules: RedactionRules) -> JsonDict:
    if not isinstance(content, Mapping):
        return {}
    if rules is RedactionRules.V11 and event_type == "m.room.create":
        # frag/v11-redactions: the create event keeps all of its content.
        return dict(content)
    kept = _CONTENT_KEYS[rules].get(event_type, frozenset()) if isinstance(event_type, str) else ()
    result = {k: v for k, v in content.items() if k in kept}
    if rules is RedactionRules.V11 and event_type == "m.room.member":
        # frag/v11-redactions: third_party_invite keeps only its "signed" key.
        third_party_invite = content.get("third_party_invite")
        if isinstance(third_party_invite, Mapping):
            result["third_party_invite"] = {
                k: v for k, v in third_party_invite.items() if k == "signed"
            }
    return result


def redact_event(event: Mapping[str, object], room_version: RoomVersion) -> JsonDict:
    """A redacted deep copy of ``event`` under ``room_version``'s redaction rules (digest §6.7)."""
    rules = room_version.redaction_rules
    top_level = _TOP_LEVEL_KEYS[rules]
    # CS §Redactions: every key not listed is removed, including unsigned.
    redacted = {k: v for k, v in event.items() if k in top_level}
    if "content" in redacted:
        redacted["content"] = _redact_content(event.get("type"), event["content"], rules)
    return copy.deepcopy(redacted)


def compute_reference_hash(event: Mapping[str, object], room_version: RoomVersion) -> bytes:
    """The sha256 reference hash of ``event`` (SS §Calculating the reference hash)."""
    # SS §Calculating the reference hash: redact, drop signatures and unsigned, canonical JSON.
    redacted = _strip_unsigned_and_signatures(redact_event(event, room_version))
    return hashlib.sha256(encode_canonical_json(redacted)).digest()


def get_event_reference_ids(refs: object) -> list[str]:
    """The event ids of a ``prev_events`` or ``auth_events`` list: bare ids (rooms/v3+) or the
    first of ``[event_id, {hashes}]`` pairs (rooms/v1 §Event format); anything else is skipped."""
    if not isinstance(refs, list):
        return []
    ids = [ref[0] if isinstance(ref, list) and ref else ref for ref in refs]
    return [event_id for event_id in ids if isinstance(event_id, str)]


def compute_event_id(event: Mapping[str, object], room_version: RoomVersion) -> str:
    """The event id of ``event`` in ``room_version`` (rooms/v1, rooms/v3, frag/v4-event-ids)."""
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.V1:
        # rooms/v1: the event id is chosen by the origin and carried in the PDU.
        event_id = event.get("event_id")
        if not isinstance(event_id, str):
            raise MatrixError("M_BAD_JSON", "Event has no event_id")
        return event_id
    digest = compute_reference_hash(event, room_version)
    # rooms/v3: standard alphabet; frag/v4-event-ids: URL-safe alphabet.
    return "$" + encode_base64(digest, urlsafe=fmt is EventIdFormat.V4)


def compute_room_id_v12(create_event: Mapping[str, object]) -> str:
    """The v12 room id: "!" + URL-safe unpadded base64 of the create event's reference hash."""
    # rooms/v12 §Room IDs: the create event's event id with "!" in place of "$".
    return "!" + encode_base64(compute_reference_hash(create_event, V12), urlsafe=True)


def sign_event(
    event: Mapping[str, object],
    room_version: RoomVersion,
    server_name: str,
    signing_key: SigningKey,
) -> JsonDict:
    """A hashed and signed copy of ``event`` (SS §Adding hashes and signatures)."""
    # SS §Adding hashes and signatures: 1. content hash; 2. redact a copy; 3. sign the redacted
    # copy; 4. copy its signatures back onto the full event.
    hashed = add_content_hash(event)
    redacted = redact_event(hashed, room_version)
    sign_json(redacted, server_name, signing_key)
    hashed["signatures"] = redacted["signatures"]
    return hashed


def check_event_signature(
    event: Mapping[str, object],
    room_version: RoomVersion,
    server_name: str,
    verify_keys: Mapping[str, VerifyKey],
) -> None:
    """Raise M_INVALID_PARAM unless ``server_name`` validly signed ``event`` with one of the keys.

    ``verify_keys`` maps key ids (``ed25519:abc``) to keys the caller considers usable for this
    event (SS §Validating hashes and signatures on received events).
    """
    # SS §Validating hashes and signatures: check the redacted copy; APPX §Checking for a
    # Signature: strip signatures and unsigned before canonicalising.
    redacted = redact_event(event, room_version)
    signatures = redacted.get("signatures")
    server_signatures = signatures.get(server_name) if isinstance(signatures, dict) else None
    if not is_signed_by_any(redacted, server_signatures, verify_keys):
        raise MatrixError("M_INVALID_PARAM", f"Event is not validly signed by {server_name}")


def is_signed_by_any(
    value: Mapping[str, object], signatures: object, verify_keys: Mapping[str, VerifyKey]
) -> bool:
    """Whether one of ``signatures`` (one server's ``{key id: unpadded base64}``) is a valid
    signature of ``value`` by the key ``verify_keys`` holds under that key id.

    APPX §Checking for a Signature: the signed bytes are the canonical JSON of ``value`` without
    ``signatures`` and ``unsigned``; signatures by unknown algorithms are skipped.
    """
    if not isinstance(signatures, dict):
        return False
    message = encode_canonical_json(_strip_unsigned_and_signatures(value))
    for key_id, signature_b64 in signatures.items():
        verify_key = verify_keys.get(key_id) if key_id.startswith("ed25519:") else None
        if verify_key is None or not isinstance(signature_b64, str):
            continue
        try:
            verify_key.verify(message, decode_base64(signature_b64))
        except (ValueError, CryptoError):
            continue
        return True
    return False
