"""The send_join and transaction benchmarks' pure parts: the PDUs they send, their summaries."""

import json

import pytest
from signedjson.key import get_verify_key

from bench.join_send import ROOM_VERSION, Join
from bench.send_join import summarise as summarise_joins
from bench.transactions import build_transactions, chain_after_join
from matrix.events import check_event_signature, compute_event_id, is_content_hash_valid
from matrix.xmatrix import build_request_json, check_request_signature, parse_authorization_headers
from tests.factories import make_remote_server

REMOTE = make_remote_server("127.0.0.1:8450")
SENDER = REMOTE.user("sender")
ROOM_ID = "!bench:resident.test"


def _state_event(event_type: str, content: dict, state_key: str = "") -> dict:
    return {
        "room_id": ROOM_ID,
        "type": event_type,
        "state_key": state_key,
        "sender": "@admin:resident.test",
        "content": content,
        "depth": 1,
        "prev_events": [],
        "auth_events": [],
        "origin_server_ts": 1,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }


def _joined() -> Join:
    state = [
        _state_event("m.room.create", {"room_version": "12"}),
        _state_event("m.room.power_levels", {"users": {}}),
        _state_event("m.room.join_rules", {"join_rule": "public"}),
    ]
    event = {**_state_event("m.room.member", {"membership": "join"}, SENDER), "depth": 7}
    return Join(SENDER, event, "$join", 1.0, 2.0, 100, state, [])


def test_chain_after_join_cites_power_levels_and_the_join_not_the_create_event_in_v12():
    chain = chain_after_join(_joined(), ROOM_ID)
    power_levels = _joined().state[1]
    assert chain.auth_events == [compute_event_id(power_levels, ROOM_VERSION), "$join"]
    assert (chain.prev_event, chain.depth, chain.sender) == ("$join", 7, SENDER)


def test_build_transactions_chains_signed_hashed_pdus_behind_a_signed_request():
    chain = chain_after_join(_joined(), ROOM_ID)
    transactions = build_transactions(REMOTE, "resident.test", chain, 2, 3, "t")
    assert len(transactions) == 2
    previous, depth = "$join", 7
    verify_keys = {REMOTE.key_id: get_verify_key(REMOTE.signing_key)}
    for transaction in transactions:
        body = json.loads(transaction.body)
        assert len(body["pdus"]) == 3
        for pdu in body["pdus"]:
            assert pdu["prev_events"] == [previous]
            assert pdu["depth"] == depth + 1
            assert pdu["auth_events"] == chain.auth_events
            assert is_content_hash_valid(pdu)
            check_event_signature(pdu, ROOM_VERSION, REMOTE.server_name, verify_keys)
            previous, depth = compute_event_id(pdu, ROOM_VERSION), depth + 1
        auth = parse_authorization_headers([transaction.authorization])
        request = build_request_json(
            "PUT", transaction.path, REMOTE.server_name, "resident.test", body
        )
        check_request_signature(request, auth, verify_keys)
    # The chain moved on: the next run's first PDU follows this run's last.
    assert (chain.prev_event, chain.depth) == (previous, depth)


def test_build_transactions_ids_differ_between_tags():
    first = build_transactions(REMOTE, "d", chain_after_join(_joined(), ROOM_ID), 1, 1, "a")
    second = build_transactions(REMOTE, "d", chain_after_join(_joined(), ROOM_ID), 1, 1, "b")
    assert first[0].path != second[0].path
    assert json.loads(first[0].body)["pdus"] != json.loads(second[0].body)["pdus"]


def _cell(latencies: list[float], cpu_s: float) -> dict:
    joins = [
        {
            "make_join_ms": 1.0,
            "send_join_ms": value,
            "response_bytes": 2048,
            "state_events": 1001,
            "auth_chain_events": 4,
            "settle_s": 0.5,
        }
        for value in latencies
    ]
    return {"joins": joins, "server_cpu_s": cpu_s}


def test_summarise_joins_takes_percentiles_over_every_join_and_cpu_per_join():
    summary = summarise_joins(
        [_cell([float(v) for v in range(1, 11)], 0.5), _cell([100.0] * 10, 1.5)]
    )
    assert summary["joins"] == 20
    assert summary["send_join_p50_ms"] == pytest.approx(55.0)
    assert summary["send_join_p90_ms"] == 100.0
    assert (summary["send_join_min_ms"], summary["send_join_max_ms"]) == (1.0, 100.0)
    assert summary["server_cpu_ms_per_join"] == pytest.approx(100.0)
    assert summary["response_kb"] == 2.0
