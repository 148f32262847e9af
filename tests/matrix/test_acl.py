"""Tests for matrix.acl: m.room.server_acl evaluation (SS §ACLs, knock-digest §3)."""

import itertools
import re
import time
from typing import Any

import pytest

from matrix.acl import check_server_acl, is_server_allowed
from matrix.errors import MatrixError

ALLOW_ALL = {"allow": ["*"]}


@pytest.mark.parametrize(
    ("server_name", "acl", "expected"),
    [
        # 1. No ACL event: everyone is allowed.
        pytest.param("evil.com", None, True, id="no-acl"),
        pytest.param("1.2.3.4", None, True, id="no-acl-ip"),
        # Missing or unusable allow: deny everyone.
        pytest.param("good.com", {}, False, id="empty-content"),
        pytest.param("good.com", {"deny": []}, False, id="missing-allow"),
        pytest.param("good.com", {"allow": "*"}, False, id="allow-not-list"),
        pytest.param("good.com", {"allow": [1, None, ["*"]]}, False, id="allow-non-strings"),
        pytest.param("good.com", {"allow": [1, "good.com"]}, True, id="allow-mixed"),
        # Deny before allow.
        pytest.param("evil.com", {"allow": ["*"], "deny": ["evil.com"]}, False, id="deny-first"),
        pytest.param("good.com", {"allow": ["*"], "deny": ["evil.com"]}, True, id="not-denied"),
        pytest.param("good.com", {"allow": ["*"], "deny": "*"}, True, id="deny-not-list"),
        pytest.param("good.com", {"allow": ["*"], "deny": [7, {"a": 1}]}, True, id="deny-junk"),
        # Ports are ignored, on the name and (unsupported) in patterns.
        pytest.param("evil.com:8448", {"allow": ["*"], "deny": ["evil.com"]}, False, id="port"),
        pytest.param("evil.com:1234", {"allow": ["evil.com"]}, True, id="port-allowed"),
        pytest.param("evil.com", {"allow": ["evil.com:8448"]}, False, id="port-in-pattern"),
        # Whole-name, case-insensitive globs.
        pytest.param("EVIL.com", {"allow": ["*"], "deny": ["evil.COM"]}, False, id="case"),
        pytest.param("a.evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, False, id="subdomain"),
        pytest.param("evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, True, id="star-dot"),
        pytest.param("a.b.evil.com", {"allow": ["*.evil.com"]}, True, id="star-crosses-dots"),
        pytest.param("notevil.com", {"allow": ["evil.com"]}, False, id="whole-name-prefix"),
        pytest.param("evil.com.au", {"allow": ["evil.com"]}, False, id="whole-name-suffix"),
        pytest.param("evil1.com", {"allow": ["evil?.com"]}, True, id="question-one"),
        pytest.param("evil.com", {"allow": ["evil?.com"]}, False, id="question-not-zero"),
        pytest.param("evil12.com", {"allow": ["evil?.com"]}, False, id="question-not-two"),
        pytest.param("evilxcom", {"allow": ["evil.com"]}, False, id="dot-is-literal"),
        pytest.param("a+b.com", {"allow": ["a+b.com"]}, True, id="plus-is-literal"),
        pytest.param("aab.com", {"allow": ["a+b.com"]}, False, id="plus-not-regex"),
        pytest.param("x.com", {"allow": ["[xy].com"]}, False, id="brackets-literal"),
        pytest.param("a.com", {"allow": ["**"]}, True, id="double-star"),
        pytest.param("abcabd", {"allow": ["*ab*abd"]}, True, id="backtrack-needed"),
        pytest.param("abab", {"allow": ["a*b*a*b"]}, True, id="multi-star-tight"),
        pytest.param("abab", {"allow": ["a*b*a*b*c"]}, False, id="multi-star-miss"),
        pytest.param("matrix.org", {"allow": ["m*x.o?g"]}, True, id="mixed"),
        # IP literals.
        pytest.param("1.2.3.4", {"allow": ["*"], "allow_ip_literals": False}, False, id="ipv4"),
        pytest.param(
            "1.2.3.4:8448", {"allow": ["*"], "allow_ip_literals": False}, False, id="ipv4-port"
        ),
        pytest.param("[::1]", {"allow": ["*"], "allow_ip_literals": False}, False, id="ipv6"),
        pytest.param(
            "[::1]:8448", {"allow": ["*"], "allow_ip_literals": False}, False, id="ipv6-port"
        ),
        pytest.param("1.2.3.4", {"allow": ["*"], "allow_ip_literals": True}, True, id="ip-allowed"),
        pytest.param("1.2.3.4", {"allow": ["*"]}, True, id="ip-default-true"),
        pytest.param(
            "1.2.3.4", {"allow": ["*"], "allow_ip_literals": 0}, True, id="ip-zero-not-bool"
        ),
        pytest.param(
            "1.2.3.4", {"allow": ["*"], "allow_ip_literals": "false"}, True, id="ip-string"
        ),
        pytest.param("1.2.3.4", {"allow": ["*"], "allow_ip_literals": None}, True, id="ip-null"),
        pytest.param("good.com", {"allow": ["*"], "allow_ip_literals": False}, True, id="dns-ok"),
        # Issue 21 finding 10: other spellings of 127.0.0.5 are IP literals too.
        pytest.param(
            "2130706437", {"allow": ["*"], "allow_ip_literals": False}, False, id="ip-decimal"
        ),
        pytest.param(
            "0x7f000005:8448", {"allow": ["*"], "allow_ip_literals": False}, False, id="ip-hex"
        ),
        pytest.param(
            "0x7f.0.0.5", {"allow": ["*"], "allow_ip_literals": False}, False, id="ip-hex-octet"
        ),
        pytest.param("[::1]:8448", {"allow": ["[::1]"]}, True, id="ipv6-brackets-kept"),
        pytest.param("[::1]:8448", {"allow": ["::1"]}, False, id="ipv6-needs-brackets"),
        pytest.param("1.2.3.4", {"allow": ["*"], "deny": ["1.2.3.*"]}, False, id="ip-glob-deny"),
    ],
)
def test_is_server_allowed_follows_acl_rules_when_evaluating(
    server_name: str, acl: dict[str, Any] | None, expected: bool
) -> None:
    assert is_server_allowed(server_name, acl) is expected


def test_is_server_allowed_finishes_quickly_when_glob_is_hostile() -> None:
    # A naive '.*' translation backtracks exponentially on this; the ACL comes from room state.
    acl = {"allow": ["*a" * 40 + "b"]}
    start = time.monotonic()
    assert is_server_allowed("a" * 250, acl) is False
    assert is_server_allowed("a" * 249 + "b", acl) is True
    assert time.monotonic() - start < 1.0


def _naive_glob_match(glob: str, name: str) -> bool:
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(pattern, name, re.IGNORECASE | re.DOTALL) is not None


def _words(alphabet: str, max_len: int) -> list[str]:
    return [
        "".join(letters)
        for n in range(max_len + 1)
        for letters in itertools.product(alphabet, repeat=n)
    ]


def test_is_server_allowed_agrees_with_naive_glob_when_exhaustive_small_cases() -> None:
    # The backtracking-free translation must give the same answers as the textbook one.
    names = _words("aB", 5)
    for glob in _words("ab*?", 4):
        for name in names:
            assert is_server_allowed(name, {"allow": [glob]}) is _naive_glob_match(glob, name)


def test_check_server_acl_raises_forbidden_when_server_denied() -> None:
    with pytest.raises(MatrixError) as exc_info:
        check_server_acl("evil.com:8448", {"allow": ["*"], "deny": ["evil.com"]})
    assert exc_info.value.errcode == "M_FORBIDDEN"
    assert exc_info.value.status == 403


@pytest.mark.parametrize(
    "acl", [pytest.param(None, id="no-acl"), pytest.param(ALLOW_ALL, id="allow-all")]
)
def test_check_server_acl_returns_none_when_server_allowed(acl: dict[str, Any] | None) -> None:
    assert check_server_acl("good.com", acl) is None
