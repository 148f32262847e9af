"""Tests for matrix.ids: server names, user, room and event ids (APPX §Identifier Grammar)."""

import pytest

from matrix.errors import MatrixError
from matrix.ids import (
    get_domain,
    is_ip_literal,
    parse_event_id,
    parse_room_id,
    parse_server_name,
    parse_user_id,
    split_server_name,
    strip_port,
)
from matrix.room_versions import KNOWN_ROOM_VERSIONS

HASH_STD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ+/01234"
HASH_URLSAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234"


def test_get_domain_returns_everything_after_first_colon_when_port_present() -> None:
    assert get_domain("@alice:example.org:8448") == "example.org:8448"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("example.org", id="dns"),
        pytest.param("EXAMPLE.org", id="dns-upper"),
        pytest.param("localhost", id="single-label"),
        pytest.param("example.org:8448", id="dns-port"),
        pytest.param("example.org:1", id="port-min"),
        pytest.param("example.org:65535", id="port-max"),
        pytest.param("1.2.3.4", id="ipv4"),
        pytest.param("1.2.3.4:8448", id="ipv4-port"),
        pytest.param("[::1]", id="ipv6"),
        pytest.param("[1234:5678::abcd]:8448", id="ipv6-port"),
        pytest.param("[::ffff:1.2.3.4]", id="ipv6-mapped-ipv4"),
        pytest.param(".".join(["a" * 63] * 4), id="max-length-63-char-labels"),
        pytest.param("xn--bcher-kva.example", id="a-label"),
        pytest.param("XN--bcher-kva.example", id="a-label-upper-prefix"),
        pytest.param("0.0.0.0", id="ipv4-zeros"),
        pytest.param("255.255.255.255:1", id="ipv4-max"),
        pytest.param("4chan.example", id="label-starting-with-digit"),
        pytest.param("a.b1", id="last-label-alnum"),
    ],
)
def test_parse_server_name_returns_input_when_valid(name: str) -> None:
    assert parse_server_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 256, id="too-long"),
        pytest.param(".".join(["a" * 63] * 4) + ".a", id="dns-name-256"),
        pytest.param("a" * 64, id="label-over-63"),
        pytest.param("..", id="dots-only"),
        pytest.param(".", id="one-dot"),
        pytest.param("a..b", id="empty-label"),
        pytest.param("example.org.", id="trailing-dot"),
        pytest.param(".example.org", id="leading-dot"),
        pytest.param("xn--zz", id="a-label-not-punycode"),
        pytest.param("127.000.000.007:8448", id="ipv4-leading-zeros"),
        pytest.param("0177.0.0.7:8448", id="ipv4-octal"),
        pytest.param("256.1.1.1", id="ipv4-octet-over-255"),
        pytest.param("2130706437", id="ipv4-one-number"),
        pytest.param("0x7f000005", id="ipv4-hex-number"),
        pytest.param("0x7f.0.0.5", id="ipv4-hex-octet"),
        pytest.param("1.2.3", id="ipv4-three-parts"),
        pytest.param("example.0x", id="last-label-hex-prefix"),
        pytest.param("exa_mple.org", id="underscore"),
        pytest.param("exämple.org", id="non-ascii"),
        pytest.param("example.org:", id="empty-port"),
        pytest.param("example.org:0", id="port-zero"),
        pytest.param("example.org:65536", id="port-too-big"),
        pytest.param("example.org:123456", id="port-six-digits"),
        pytest.param("example.org:8a", id="port-not-digits"),
        pytest.param(":8448", id="no-host"),
        pytest.param("a:b:c", id="two-colons"),
        pytest.param("[::1", id="ipv6-unclosed"),
        pytest.param("[]", id="ipv6-empty"),
        pytest.param("[::1]x", id="ipv6-trailing-junk"),
        pytest.param("[::1]:", id="ipv6-empty-port"),
        pytest.param("[1:2:3:4:5:6:7:8:9]", id="ipv6-too-many-groups"),
        pytest.param("[::g]", id="ipv6-bad-char"),
        pytest.param("::1", id="ipv6-unbracketed"),
    ],
)
def test_parse_server_name_raises_invalid_param_when_malformed(name: str) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_server_name(name)
    assert exc_info.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize("value", [None, 8448, ["example.org"], {"a": 1}])
def test_parse_server_name_refuses_what_is_not_a_string(value) -> None:
    # Names can come from hostile JSON; a list must be a Matrix error, not a TypeError.
    with pytest.raises(MatrixError) as exc_info:
        parse_server_name(value)
    assert exc_info.value.errcode == "M_INVALID_PARAM"


def test_parse_server_name_refuses_a_bad_name_every_time() -> None:
    # Valid names are remembered; a refused one is not, so it is refused again.
    for _ in range(2):
        with pytest.raises(MatrixError):
            parse_server_name("bad name")
    assert parse_server_name("example.org") == parse_server_name("example.org")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("example.org", "example.org", id="no-port"),
        pytest.param("example.org:8448", "example.org", id="dns-port"),
        pytest.param("1.2.3.4:80", "1.2.3.4", id="ipv4-port"),
        pytest.param("[::1]:8448", "[::1]", id="ipv6-port"),
        pytest.param("[::1]", "[::1]", id="ipv6-no-port"),
        pytest.param("[::1", "[::1", id="ipv6-unclosed"),
    ],
)
def test_strip_port_keeps_host_and_ipv6_brackets_when_port_present(
    name: str, expected: str
) -> None:
    assert strip_port(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("1.2.3.4", True, id="ipv4"),
        pytest.param("1.2.3.4:8448", True, id="ipv4-port"),
        pytest.param("[::1]", True, id="ipv6"),
        pytest.param("[::1]:8448", True, id="ipv6-port"),
        pytest.param("example.org", False, id="dns"),
        pytest.param("1.2.3.4.example.org", False, id="dns-starting-with-ipv4"),
        # Resolvers read a name ending in a number as an IPv4 address (inet_aton): 1.2.0.3.
        pytest.param("1.2.3", True, id="three-parts-is-numeric"),
        pytest.param("2130706437", True, id="one-number"),
        pytest.param("0x7f000005:8448", True, id="hex-number-port"),
        pytest.param("0x7f.0.0.5", True, id="hex-octet"),
        pytest.param("a.b1", False, id="last-label-alnum"),
    ],
)
def test_is_ip_literal_classifies_host_when_given_server_name(name: str, expected: bool) -> None:
    assert is_ip_literal(name) is expected


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("@alice:example.org", id="plain"),
        pytest.param("@a.b_c=d-e/f+g:example.org:8448", id="grammar-chars-port"),
        pytest.param("@Alice!#~:example.org", id="historical-printable"),
        pytest.param("@bob:[::1]:8448", id="ipv6-server"),
        pytest.param("@" + "a" * (255 - len("@:example.org")) + ":example.org", id="255-bytes"),
        # APPX §Historical User IDs (v1.14): any non-surrogate code points but ':' and NUL,
        # "including other control characters and the empty string"
        pytest.param("@:example.org", id="historical-empty-localpart"),
        pytest.param("@al\nice:example.org", id="historical-control-char"),
        pytest.param("@al ice:a.test", id="historical-space"),
        pytest.param("@ålice:a.test", id="historical-non-ascii"),
        pytest.param("@\U0001f408:a.test", id="historical-astral"),
    ],
)
def test_parse_user_id_returns_input_when_valid(user_id: str) -> None:
    assert parse_user_id(user_id) == user_id


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("alice:example.org", id="no-sigil"),
        pytest.param("@alice", id="no-server"),
        pytest.param("@al\x00ice:example.org", id="nul"),
        pytest.param("@al\ud800ice:example.org", id="surrogate"),
        pytest.param("@\udfff:example.org:8448", id="surrogate-only"),
        pytest.param("@alice:exa mple.org", id="bad-server"),
        pytest.param("@alice:", id="empty-server"),
        pytest.param("@" + "a" * (256 - len("@:example.org")) + ":example.org", id="256-bytes"),
        pytest.param("@" + "é" * 125 + ":example.org", id="multibyte-over-255-bytes"),
    ],
)
def test_parse_user_id_raises_invalid_param_when_malformed(user_id: str) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_user_id(user_id)
    assert exc_info.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    "room_id",
    [
        pytest.param("!abc:example.org", id="v1-v11"),
        pytest.param("!日本 !$:example.org:8448", id="v1-v11-any-code-point"),
        pytest.param("!" + HASH_URLSAFE, id="v12"),
    ],
)
def test_parse_room_id_returns_input_when_valid(room_id: str) -> None:
    assert parse_room_id(room_id) == room_id


@pytest.mark.parametrize(
    "room_id",
    [
        pytest.param("abc:example.org", id="no-sigil"),
        pytest.param("!:example.org", id="empty-opaque"),
        pytest.param("!a\x00b:example.org", id="nul"),
        pytest.param("!abc:bad_server", id="bad-server"),
        pytest.param("!" + HASH_STD, id="v12-standard-alphabet"),
        pytest.param("!" + HASH_URLSAFE[:-1], id="v12-too-short"),
        pytest.param("!" + HASH_URLSAFE + "A", id="v12-too-long"),
        pytest.param("!" + "a" * 250 + ":example.org", id="over-255-bytes"),
    ],
)
def test_parse_room_id_raises_invalid_param_when_malformed(room_id: str) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_room_id(room_id)
    assert exc_info.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    ("event_id", "room_version_id"),
    [
        pytest.param("$abc:example.org", "1", id="v1"),
        pytest.param("$a/b+c:example.org:8448", "2", id="v2-port"),
        pytest.param("$" + HASH_STD, "3", id="v3"),
        pytest.param("$" + HASH_URLSAFE, "4", id="v4"),
        pytest.param("$" + HASH_URLSAFE, "12", id="v12"),
    ],
)
def test_parse_event_id_returns_input_when_format_matches_version(
    event_id: str, room_version_id: str
) -> None:
    assert parse_event_id(event_id, KNOWN_ROOM_VERSIONS[room_version_id]) == event_id


@pytest.mark.parametrize(
    ("event_id", "room_version_id"),
    [
        pytest.param("abc:example.org", "1", id="v1-no-sigil"),
        pytest.param("$abc", "1", id="v1-no-domain"),
        pytest.param("$:example.org", "1", id="v1-empty-opaque"),
        pytest.param("$a\x00:example.org", "1", id="v1-nul"),
        pytest.param("$abc:bad_server", "2", id="v2-bad-server"),
        pytest.param("$" + HASH_URLSAFE, "3", id="v3-urlsafe-alphabet"),
        pytest.param("$" + HASH_STD, "4", id="v4-standard-alphabet"),
        pytest.param("$abc:example.org", "7", id="v7-v1-format"),
        pytest.param("$" + HASH_URLSAFE[:-1], "11", id="v11-too-short"),
        pytest.param("$" + HASH_URLSAFE + "=", "12", id="v12-padded"),
        pytest.param("$" + "a" * 250 + ":example.org", "1", id="v1-over-255-bytes"),
    ],
)
def test_parse_event_id_raises_invalid_param_when_format_mismatches_version(
    event_id: str, room_version_id: str
) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_event_id(event_id, KNOWN_ROOM_VERSIONS[room_version_id])
    assert exc_info.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("example.org", ("example.org", None), id="host"),
        pytest.param("example.org:8000", ("example.org", 8000), id="host-port"),
        pytest.param("1.2.3.4", ("1.2.3.4", None), id="ipv4"),
        pytest.param("1.2.3.4:80", ("1.2.3.4", 80), id="ipv4-port"),
        pytest.param("[::1]", ("::1", None), id="ipv6"),
        pytest.param("[::1]:8448", ("::1", 8448), id="ipv6-port"),
    ],
)
def test_split_server_name_for_connecting(name, expected):
    assert split_server_name(name) == expected
