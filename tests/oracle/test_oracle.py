"""The oracle's pieces without Synapse: generated cases, our verdict, each deviation's predicate."""

import json

import pytest
from hypothesis import HealthCheck, given, settings

from matrix.types import JsonDict
from oracle.cases import oracle_case
from oracle.deviations import DEVIATIONS, Disagreement, classify
from oracle.run import our_verdict

CREATE: JsonDict = {
    "event_id": "$c:a.test",
    "type": "m.room.create",
    "state_key": "",
    "sender": "@alice:a.test",
    "room_id": "!r:a.test",
    "content": {"creator": "@alice:a.test"},
}


def _case(event: JsonDict, *, federate: object = "absent", room_version: str = "1") -> JsonDict:
    create = {**CREATE, "content": dict(CREATE["content"])}
    if federate != "absent":
        create["content"]["m.federate"] = federate
    event = {"room_id": "!r:a.test", "auth_events": [["$c:a.test", {}]], **event}
    return {"room_version": room_version, "junk": True, "store": [create], "event": event}


def _member(sender: str, target: str, membership: str, **content: object) -> JsonDict:
    return {
        "type": "m.room.member",
        "sender": sender,
        "state_key": target,
        "content": {"membership": membership, **content},
        "signatures": {sender.split(":", 1)[1]: {}},
    }


def _deny(where: str = "check_state_dependent_auth_rules") -> JsonDict:
    return {"verdict": "deny", "reason": "403", "where": where}


ALLOW: JsonDict = {"verdict": "allow", "reason": "", "where": ""}

KNOWN = [
    pytest.param(
        Disagreement(
            "allow",
            _deny(),
            _case(_member("@alice:a.test", "@bob:b.test", "invite"), federate=False),
        ),
        "m.federate target check",
        id="federate-target",
    ),
    pytest.param(
        Disagreement(
            "allow", _deny(), _case(_member("@bob:b.test", "@bob:b.test", "join"), federate="x")
        ),
        "non-boolean m.federate",
        id="federate-string",
    ),
    pytest.param(
        Disagreement(
            "deny",
            ALLOW,
            _case(
                _member(
                    "@bob:b.test",
                    "@bob:b.test",
                    "knock",
                    join_authorised_via_users_server="@carol:c.test",
                ),
                room_version="10",
            ),
        ),
        "authoriser signature on joins only",
        id="authoriser-knock",
    ),
    pytest.param(
        Disagreement(
            "deny",
            ALLOW,
            _case(
                {
                    "type": "m.room.redaction",
                    "sender": "@bob:b.test",
                    "event_id": "$x:b.test",
                    "content": {},
                }
            ),
        ),
        "v1/v2 redaction without redacts",
        id="redaction-v1",
    ),
    pytest.param(
        Disagreement(
            "allow",
            {"verdict": "crash", "reason": "ValueError", "where": "_check_power_levels"},
            _case(
                {
                    "type": "m.room.power_levels",
                    "sender": "@alice:a.test",
                    "state_key": "",
                    "content": {"ban": "5e1"},
                }
            ),
        ),
        "crash on junk power levels",
        id="crash-5e1",
    ),
    pytest.param(
        Disagreement(
            "allow",
            {"verdict": "crash", "reason": "AttributeError", "where": "get_user_power_level"},
            _case(
                {
                    "type": "m.room.power_levels",
                    "sender": "@alice:a.test",
                    "state_key": "",
                    "content": {"users": 5},
                }
            ),
        ),
        "crash on junk power levels",
        id="crash-users-not-object",
    ),
    pytest.param(
        Disagreement(
            "deny",
            ALLOW,
            _case(
                {
                    "type": "m.room.power_levels",
                    "sender": "@alice:a.test",
                    "state_key": "",
                    "content": {"users": {"@bob:b.test": True}},
                }
            ),
        ),
        "Python int() power levels",
        id="int-true",
    ),
]


@pytest.mark.parametrize(("disagreement", "kind"), KNOWN)
def test_classify_names_the_deviation(disagreement: Disagreement, kind: str) -> None:
    assert classify(disagreement) == kind


def test_classify_unknown_disagreement_is_none() -> None:
    # Synapse refusing a plain join to a public room that the spec allows: no deviation says so
    case = _case(_member("@alice:a.test", "@alice:a.test", "join"))
    assert classify(Disagreement("allow", _deny(), case)) is None


def test_every_deviation_names_its_clause() -> None:
    assert all(deviation.clause and deviation.predicate.__doc__ for deviation in DEVIATIONS)


@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(oracle_case())
def test_oracle_case_is_json_with_a_verdict(case: JsonDict) -> None:
    assert json.loads(json.dumps(case)) == case
    verdict, _ = our_verdict(case)
    assert verdict in ("allow", "deny")
