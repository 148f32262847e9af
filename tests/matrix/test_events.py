"""Tests for matrix.events: hashes, redaction, reference hashes, event ids and signatures."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import (
    decode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import sign_json

from matrix.canonical import encode_canonical_json
from matrix.errors import MatrixError
from matrix.events import (
    add_content_hash,
    check_event_signature,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    compute_room_id_v12,
    is_content_hash_valid,
    redact_event,
    sign_event,
)
from matrix.ids import parse_event_id, parse_room_id
from matrix.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V3,
    V4,
    V11,
    V12,
    EventIdFormat,
    RoomVersion,
)

# The spec's appendix vectors: the project's copy (tests/golden), checked against the team's
# shared/spec/vectors.json beside the checkout whenever that is present (it is in CI).
GOLDEN_VECTORS_PATH = Path(__file__).resolve().parents[1] / "golden" / "vectors.json"
SHARED_VECTORS_PATH = Path(__file__).resolve().parents[2].parent / "shared/spec/vectors.json"
VECTORS: dict[str, Any] = json.loads(GOLDEN_VECTORS_PATH.read_text(encoding="utf-8"))
SIGNING_KEY = decode_signing_key_base64("ed25519", "1", VECTORS["signing_key_seed_b64"])
VERIFY_KEYS = {"ed25519:1": get_verify_key(SIGNING_KEY)}
SERVER = VECTORS["server_name"]

ALL_VERSIONS = [pytest.param(rv, id=f"v{rv.identifier}") for rv in KNOWN_ROOM_VERSIONS.values()]
# digest §6.9: the appendix event, signed with the v1-v10 rules.
MINIMAL_EVENT = VECTORS["event_signing"][0]["input"]
SIGNED_MINIMAL_EVENT = VECTORS["event_signing"][0]["output"]


def test_vectors_copy_matches_shared_spec():
    if not SHARED_VECTORS_PATH.exists():
        pytest.skip("no shared/spec beside this checkout")
    assert json.loads(SHARED_VECTORS_PATH.read_text(encoding="utf-8")) == VECTORS


def _versions(*identifiers: str) -> list[RoomVersion]:
    return [KNOWN_ROOM_VERSIONS[i] for i in identifiers]


V1_TO_V10 = _versions("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")


def knock_event(room_version: RoomVersion) -> dict[str, Any]:
    """A knock PDU in ``room_version``'s format (event_id only for the v1 format)."""
    event: dict[str, Any] = {
        "room_id": "!room:domain",
        "type": "m.room.member",
        "state_key": "@a:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1_000_000,
        "content": {"membership": "knock", "reason": "let me in"},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {"age_ts": 1_000_000},
    }
    if room_version.event_id_format is EventIdFormat.V1:
        event["event_id"] = "$knock:domain"
    return event


# ---------------------------------------------------------------- known-answer vectors


def test_verify_key_matches_digest_when_derived_from_vector_seed() -> None:
    verify_key = encode_verify_key_base64(get_verify_key(SIGNING_KEY))
    assert verify_key == "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"json-{i}") for i, c in enumerate(VECTORS["json_signing"])]
)
def test_sign_json_reproduces_vector_when_signing_plain_json(case: dict[str, Any]) -> None:
    signed = sign_json(copy.deepcopy(case["input"]), SERVER, SIGNING_KEY)
    assert encode_canonical_json(signed) == encode_canonical_json(case["output"])


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"event-{i}") for i, c in enumerate(VECTORS["event_signing"])]
)
@pytest.mark.parametrize(
    "room_version", [pytest.param(rv, id=f"v{rv.identifier}") for rv in V1_TO_V10]
)
def test_sign_event_reproduces_vector_when_v1_to_v10_redaction(
    case: dict[str, Any], room_version: RoomVersion
) -> None:
    signed = sign_event(case["input"], room_version, SERVER, SIGNING_KEY)
    assert encode_canonical_json(signed) == encode_canonical_json(case["output"])


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"event-{i}") for i, c in enumerate(VECTORS["event_signing"])]
)
def test_compute_content_hash_reproduces_vector_when_given_input(case: dict[str, Any]) -> None:
    assert compute_content_hash(case["input"]) == case["output"]["hashes"]["sha256"]


@pytest.mark.parametrize("room_version", [V11, V12], ids=["v11", "v12"])
def test_sign_event_matches_digest_signature_when_v11_redaction(room_version: RoomVersion) -> None:
    signed = sign_event(MINIMAL_EVENT, room_version, SERVER, SIGNING_KEY)
    assert signed["signatures"] == {
        SERVER: {
            "ed25519:1": "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIz"
            "UqrjqFquWJKBw"
        }
    }
    assert signed["hashes"] == SIGNED_MINIMAL_EVENT["hashes"]


@pytest.mark.parametrize("room_version", _versions("4", "5", "6", "7", "8", "9", "10"))
def test_compute_event_id_matches_digest_when_signed_vector_event(
    room_version: RoomVersion,
) -> None:
    assert compute_event_id(SIGNED_MINIMAL_EVENT, room_version) == (
        "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"
    )


def test_compute_event_id_uses_standard_alphabet_when_v3() -> None:
    v4_id = compute_event_id(SIGNED_MINIMAL_EVENT, V4)
    assert compute_event_id(SIGNED_MINIMAL_EVENT, V3) == (v4_id.replace("-", "+").replace("_", "/"))


# ---------------------------------------------------------------- round trips per version


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_check_event_signature_accepts_event_when_signed_by_server(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    check_event_signature(signed, room_version, SERVER, VERIFY_KEYS)
    assert is_content_hash_valid(signed)


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_check_event_signature_accepts_event_when_already_redacted(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    redacted = redact_event(signed, room_version)
    check_event_signature(redacted, room_version, SERVER, VERIFY_KEYS)
    assert compute_event_id(redacted, room_version) == compute_event_id(signed, room_version)


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_check_event_signature_raises_invalid_param_when_protected_field_tampered(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    signed["content"]["membership"] = "join"
    with pytest.raises(MatrixError) as exc_info:
        check_event_signature(signed, room_version, SERVER, VERIFY_KEYS)
    assert exc_info.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_is_content_hash_valid_false_when_unprotected_content_tampered(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    signed["content"]["reason"] = "changed"
    # The signature covers only the redacted form, so it still verifies; the hash does not.
    check_event_signature(signed, room_version, SERVER, VERIFY_KEYS)
    assert not is_content_hash_valid(signed)


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_check_event_signature_depends_on_origin_when_redaction_rules_differ(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    signed["origin"] = "elsewhere"
    # digest §6.7: origin is protected (so signed) in v1-v10 and not in v11+.
    if "origin" in redact_event(signed, room_version):
        with pytest.raises(MatrixError) as exc_info:
            check_event_signature(signed, room_version, SERVER, VERIFY_KEYS)
        assert exc_info.value.errcode == "M_INVALID_PARAM"
    else:
        check_event_signature(signed, room_version, SERVER, VERIFY_KEYS)
    assert not is_content_hash_valid(signed)


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_compute_event_id_parses_with_version_format_when_event_signed(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    event_id = compute_event_id(signed, room_version)
    assert parse_event_id(event_id, room_version) == event_id
    if room_version.event_id_format is EventIdFormat.V1:
        assert event_id == "$knock:domain"
    else:
        assert len(event_id) == 44


@pytest.mark.parametrize(
    "room_version",
    [
        pytest.param(rv, id=f"v{rv.identifier}")
        for rv in KNOWN_ROOM_VERSIONS.values()
        if rv.event_id_format is not EventIdFormat.V1
    ],
)
def test_compute_event_id_changes_when_protected_field_changes(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    tampered = copy.deepcopy(signed)
    tampered["depth"] = 4
    assert compute_event_id(tampered, room_version) != compute_event_id(signed, room_version)


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_compute_reference_hash_ignores_signatures_and_unsigned_when_hashing(
    room_version: RoomVersion,
) -> None:
    signed = sign_event(knock_event(room_version), room_version, SERVER, SIGNING_KEY)
    stripped = {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
    digest = compute_reference_hash(signed, room_version)
    assert len(digest) == 32
    assert compute_reference_hash(stripped, room_version) == digest


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_sign_event_does_not_mutate_input_when_signing(room_version: RoomVersion) -> None:
    event = knock_event(room_version)
    before = copy.deepcopy(event)
    signed = sign_event(event, room_version, SERVER, SIGNING_KEY)
    assert event == before
    assert signed is not event
    assert signed["unsigned"] == before["unsigned"]


# ---------------------------------------------------------------- v12 room ids


def test_compute_room_id_v12_is_urlsafe_reference_hash_when_create_event() -> None:
    create = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@creator:domain",
        "origin_server_ts": 1_000_000,
        "content": {"room_version": "12", "additional_creators": ["@other:domain"]},
        "prev_events": [],
        "auth_events": [],
        "depth": 1,
    }
    signed = sign_event(create, V12, SERVER, SIGNING_KEY)
    room_id = compute_room_id_v12(signed)
    assert parse_room_id(room_id) == room_id
    assert len(room_id) == 44
    assert room_id == "!" + compute_event_id(signed, V12)[1:]
    # rooms/v12: the create content is protected, so it is bound into the room id.
    other = sign_event({**create, "content": {"room_version": "12"}}, V12, SERVER, SIGNING_KEY)
    assert compute_room_id_v12(other) != room_id


# ---------------------------------------------------------------- redaction table (digest §6.7)

FULL_EVENT: dict[str, Any] = {
    "event_id": "$e:domain",
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@a:domain",
    "state_key": "",
    "content": {"body": "hi"},
    "hashes": {"sha256": "x"},
    "signatures": {"domain": {"ed25519:1": "y"}},
    "depth": 1,
    "prev_events": [],
    "prev_state": [],
    "auth_events": [],
    "origin": "domain",
    "origin_server_ts": 1,
    "membership": "join",
    "unsigned": {"age": 1},
    "redacts": "$other:domain",
    "custom": True,
}
V1_TOP_LEVEL = set(FULL_EVENT) - {"unsigned", "redacts", "custom"}
V11_TOP_LEVEL = V1_TOP_LEVEL - {"origin", "membership", "prev_state"}


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_redact_event_keeps_version_top_level_keys_when_redacting(
    room_version: RoomVersion,
) -> None:
    expected = V11_TOP_LEVEL if room_version in (V11, V12) else V1_TOP_LEVEL
    redacted = redact_event(FULL_EVENT, room_version)
    assert set(redacted) == expected
    assert redacted["content"] == {}


PL_CONTENT = {
    "ban": 50,
    "events": {"m.room.name": 50},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@a:domain": 100},
    "users_default": 0,
    "notifications": {"room": 50},
}
PL_KEPT = {k: v for k, v in PL_CONTENT.items() if k not in ("invite", "notifications")}
MEMBER_CONTENT = {
    "membership": "invite",
    "displayname": "A",
    "join_authorised_via_users_server": "@b:domain",
    "third_party_invite": {"display_name": "x", "signed": {"token": "t"}},
}

# (event type, content, {version ids: expected content}), straight from the digest §6.7 table.
REDACTION_TABLE: list[tuple[str, dict[str, Any], dict[tuple[str, ...], dict[str, Any]]]] = [
    (
        "m.room.member",
        MEMBER_CONTENT,
        {
            ("1", "2", "3", "4", "5", "6", "7", "8"): {"membership": "invite"},
            ("9", "10"): {
                "membership": "invite",
                "join_authorised_via_users_server": "@b:domain",
            },
            ("11", "12"): {
                "membership": "invite",
                "join_authorised_via_users_server": "@b:domain",
                "third_party_invite": {"signed": {"token": "t"}},
            },
        },
    ),
    (
        "m.room.create",
        {"creator": "@a:domain", "room_version": "1", "m.federate": False},
        {
            ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"): {"creator": "@a:domain"},
            ("11", "12"): {"creator": "@a:domain", "room_version": "1", "m.federate": False},
        },
    ),
    (
        "m.room.join_rules",
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1},
        {
            ("1", "2", "3", "4", "5", "6", "7"): {"join_rule": "restricted"},
            ("8", "9", "10", "11", "12"): {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership"}],
            },
        },
    ),
    (
        "m.room.power_levels",
        PL_CONTENT,
        {
            ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"): PL_KEPT,
            ("11", "12"): {**PL_KEPT, "invite": 0},
        },
    ),
    (
        "m.room.aliases",
        {"aliases": ["#a:domain"], "x": 1},
        {
            ("1", "2", "3", "4", "5"): {"aliases": ["#a:domain"]},
            ("6", "7", "8", "9", "10", "11", "12"): {},
        },
    ),
    (
        "m.room.history_visibility",
        {"history_visibility": "shared", "x": 1},
        {tuple(KNOWN_ROOM_VERSIONS): {"history_visibility": "shared"}},
    ),
    (
        "m.room.redaction",
        {"redacts": "$e:domain", "reason": "spam"},
        {
            ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"): {},
            ("11", "12"): {"redacts": "$e:domain"},
        },
    ),
    (
        "m.room.message",
        {"body": "hello", "msgtype": "m.text"},
        {tuple(KNOWN_ROOM_VERSIONS): {}},
    ),
]
REDACTION_CASES = [
    pytest.param(event_type, content, KNOWN_ROOM_VERSIONS[v], expected, id=f"{event_type}-v{v}")
    for event_type, content, by_versions in REDACTION_TABLE
    for versions, expected in by_versions.items()
    for v in versions
]


def test_redaction_table_covers_every_version_when_listing_cases() -> None:
    for _event_type, _content, by_versions in REDACTION_TABLE:
        listed = [v for versions in by_versions for v in versions]
        assert sorted(listed) == sorted(KNOWN_ROOM_VERSIONS)


@pytest.mark.parametrize(("event_type", "content", "room_version", "expected"), REDACTION_CASES)
def test_redact_event_keeps_content_keys_from_table_when_type_and_version_given(
    event_type: str, content: dict[str, Any], room_version: RoomVersion, expected: dict[str, Any]
) -> None:
    event = {"type": event_type, "content": copy.deepcopy(content), "unsigned": {"a": 1}}
    assert redact_event(event, room_version) == {"type": event_type, "content": expected}


@pytest.mark.parametrize(
    ("third_party_invite", "expected"),
    [
        pytest.param({"display_name": "x"}, {}, id="no-signed"),
        pytest.param("not-an-object", None, id="not-an-object"),
    ],
)
def test_redact_event_keeps_only_signed_when_v11_third_party_invite_unusual(
    third_party_invite: Any, expected: dict[str, Any] | None
) -> None:
    event = {
        "type": "m.room.member",
        "content": {"membership": "invite", "third_party_invite": third_party_invite},
    }
    content = redact_event(event, V11)["content"]
    assert content.get("third_party_invite") == expected


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_redact_event_empties_content_when_content_not_an_object(
    room_version: RoomVersion,
) -> None:
    event = {"type": "m.room.create", "content": ["creator"]}
    assert redact_event(event, room_version) == {"type": "m.room.create", "content": {}}


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_redact_event_empties_content_when_type_not_a_string(room_version: RoomVersion) -> None:
    event = {"type": ["m.room.member"], "content": {"membership": "join"}}
    assert redact_event(event, room_version)["content"] == {}


def test_redact_event_adds_no_content_when_event_has_none() -> None:
    assert redact_event({"type": "m.room.member", "sender": "@a:b"}, V1) == {
        "type": "m.room.member",
        "sender": "@a:b",
    }


def test_redact_event_returns_deep_copy_when_result_mutated() -> None:
    event = {"type": "m.room.power_levels", "content": {"users": {"@a:b": 100}}}
    redacted = redact_event(event, V1)
    redacted["content"]["users"]["@a:b"] = 0
    assert event["content"]["users"]["@a:b"] == 100


# ---------------------------------------------------------------- hashes


def test_add_content_hash_keeps_other_algorithms_when_hashes_present() -> None:
    event = {"type": "X", "content": {}, "hashes": {"sha512": "keep", "sha256": "old"}}
    hashed = add_content_hash(event)
    assert hashed["hashes"] == {"sha512": "keep", "sha256": compute_content_hash(event)}
    assert event["hashes"] == {"sha512": "keep", "sha256": "old"}


def test_add_content_hash_replaces_hashes_when_not_an_object() -> None:
    hashed = add_content_hash({"type": "X", "hashes": "junk"})
    assert hashed["hashes"] == {"sha256": compute_content_hash({"type": "X"})}


def test_compute_content_hash_ignores_unsigned_signatures_hashes_when_hashing() -> None:
    base = {"type": "X", "content": {"a": 1}}
    noisy = {**base, "unsigned": {"u": 1}, "signatures": {"s": {}}, "hashes": {"sha256": "h"}}
    assert compute_content_hash(noisy) == compute_content_hash(base)


@pytest.mark.parametrize(
    ("hashes", "expected"),
    [
        pytest.param(SIGNED_MINIMAL_EVENT["hashes"], True, id="valid"),
        pytest.param({"sha256": SIGNED_MINIMAL_EVENT["hashes"]["sha256"] + "="}, True, id="padded"),
        pytest.param(None, False, id="missing"),
        pytest.param("5jM4wQpv", False, id="not-an-object"),
        pytest.param({"sha512": "x"}, False, id="no-sha256"),
        pytest.param({"sha256": 1}, False, id="not-a-string"),
        pytest.param({"sha256": "!!!!"}, False, id="bad-base64"),
        pytest.param(
            {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89n!cos"}, False, id="stray-char"
        ),
        pytest.param({"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}, False, id="wrong"),
    ],
)
def test_is_content_hash_valid_reports_match_when_hashes_vary(hashes: Any, expected: bool) -> None:
    event = {k: v for k, v in SIGNED_MINIMAL_EVENT.items() if k != "hashes"}
    if hashes is not None:
        event["hashes"] = hashes
    assert is_content_hash_valid(event) is expected


# ---------------------------------------------------------------- signature checks


def test_compute_event_id_raises_bad_json_when_v1_format_lacks_event_id() -> None:
    with pytest.raises(MatrixError) as exc_info:
        compute_event_id(MINIMAL_EVENT, V1)
    assert exc_info.value.errcode == "M_BAD_JSON"


def _signed_knock() -> dict[str, Any]:
    return sign_event(knock_event(V12), V12, SERVER, SIGNING_KEY)


def _with_signatures(signatures: Any) -> dict[str, Any]:
    event = _signed_knock()
    event["signatures"] = signatures
    return event


GOOD_SIGNATURE = _signed_knock()["signatures"][SERVER]["ed25519:1"]


@pytest.mark.parametrize(
    ("event", "verify_keys"),
    [
        pytest.param(_with_signatures(None), VERIFY_KEYS, id="signatures-null"),
        pytest.param(
            {k: v for k, v in _signed_knock().items() if k != "signatures"},
            VERIFY_KEYS,
            id="no-signatures",
        ),
        pytest.param(
            _with_signatures({"other": {"ed25519:1": GOOD_SIGNATURE}}),
            VERIFY_KEYS,
            id="other-server",
        ),
        pytest.param(_with_signatures({SERVER: "sig"}), VERIFY_KEYS, id="server-entry-not-object"),
        pytest.param(_with_signatures({SERVER: {}}), VERIFY_KEYS, id="server-entry-empty"),
        pytest.param(_signed_knock(), {}, id="no-verify-keys"),
        pytest.param(_signed_knock(), {"ed25519:2": VERIFY_KEYS["ed25519:1"]}, id="unknown-key-id"),
        pytest.param(
            _with_signatures({SERVER: {"curve25519:1": GOOD_SIGNATURE}}),
            {"curve25519:1": VERIFY_KEYS["ed25519:1"]},
            id="unknown-algorithm",
        ),
        pytest.param(
            _with_signatures({SERVER: {"ed25519:1": 5}}), VERIFY_KEYS, id="sig-not-string"
        ),
        pytest.param(
            _with_signatures({SERVER: {"ed25519:1": "!!!"}}), VERIFY_KEYS, id="bad-base64"
        ),
        pytest.param(
            _with_signatures({SERVER: {"ed25519:1": "AAAA"}}), VERIFY_KEYS, id="short-sig"
        ),
        pytest.param(
            _signed_knock(),
            {"ed25519:1": get_verify_key(generate_signing_key("1"))},
            id="wrong-key",
        ),
    ],
)
def test_check_event_signature_raises_invalid_param_when_no_valid_signature(
    event: dict[str, Any], verify_keys: dict[str, Any]
) -> None:
    with pytest.raises(MatrixError) as exc_info:
        check_event_signature(event, V12, SERVER, verify_keys)
    assert exc_info.value.errcode == "M_INVALID_PARAM"


def test_check_event_signature_accepts_event_when_one_of_several_keys_verifies() -> None:
    event = _with_signatures({SERVER: {"ed25519:0": "AAAA", "ed25519:1": GOOD_SIGNATURE}})
    keys = {"ed25519:0": get_verify_key(generate_signing_key("0")), **VERIFY_KEYS}
    check_event_signature(event, V12, SERVER, keys)


def test_sign_event_keeps_other_signatures_when_second_server_signs() -> None:
    other_key = generate_signing_key("k")
    first = sign_event(knock_event(V12), V12, SERVER, SIGNING_KEY)
    both = sign_event(first, V12, "other.example", other_key)
    assert set(both["signatures"]) == {SERVER, "other.example"}
    check_event_signature(both, V12, SERVER, VERIFY_KEYS)
    check_event_signature(both, V12, "other.example", {"ed25519:k": get_verify_key(other_key)})
    assert first["signatures"].keys() == {SERVER}
