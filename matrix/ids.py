"""Matrix identifiers: user ids, room ids, event ids and server names (APPX §Identifier Grammar)."""

import functools
import ipaddress
import re

from matrix.errors import MatrixError
from matrix.room_versions import EventIdFormat, RoomVersion

# APPX §Server Name: dns-name = 1*255dns-char; dns-char = DIGIT / ALPHA / "-" / ".". Read with
# RFC 1123 §2.1 (which the appendix's "DNS name" means): dot-separated labels of 1-63
# characters, so no empty label ("a..b", ".", a trailing dot). IDNA and httpx refuse those.
_DNS_LABEL = re.compile(r"[A-Za-z0-9-]{1,63}")
MAX_DNS_NAME_CHARS = 255
# APPX §Server Name: IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT, read as
# the canonical dotted quad (each part 0-255, no leading zero): "127.000.000.007" and
# "0177.0.0.7" are other spellings of an address, which resolvers read differently.
_IPV4_ADDRESS = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
)
# A name whose last label is a number (decimal or 0x-hex) is an IPv4 address to resolvers
# (inet_aton; WHATWG URL §host parsing "ends in a number"): "2130706437", "0x7f000005" and
# "0x7f.0.0.5" all reach 127.0.0.5. Such a host must be the canonical dotted quad.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
# APPX §Server Name: IPv6address = 2*45IPv6char; IPv6char = DIGIT / %x41-46 / %x61-66 / ":" / ".".
_IPV6_ADDRESS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
# APPX §Server Name: port = 1*5DIGIT.
_PORT = re.compile(r"[0-9]{1,5}")
# APPX §Unpadded Base64: a sha256 digest is 43 characters. Standard alphabet for v3 event ids
# (rooms/v3), URL-safe alphabet for v4+ event ids (frag/v4-event-ids) and v12 room ids (rooms/v12).
_STD_B64_HASH = re.compile(r"[A-Za-z0-9+/]{43}")
_URLSAFE_B64_HASH = re.compile(r"[A-Za-z0-9_-]{43}")

# APPX §Historical User IDs: surrogate code points are never part of a user id.
_SURROGATE = re.compile("[\ud800-\udfff]")

# CS §Size limits: user, room and event ids are at most 255 bytes.
MAX_ID_BYTES = 255


def get_domain(identifier: str) -> str:
    """The server-name part of a sigil-prefixed id (everything after the first ':')."""
    return identifier.split(":", 1)[1]


def _invalid(message: str) -> MatrixError:
    return MatrixError("M_INVALID_PARAM", message)


def _split_port(server_name: str) -> tuple[str, str | None]:
    """Split ``host[:port]`` into host and port text; IPv6 brackets stay on the host."""
    if server_name.startswith("["):
        # APPX §Server Name: an IPv6 literal is bracketed, so only a ':' after ']' starts a port.
        end = server_name.find("]")
        if end == -1:
            return server_name, None
        rest = server_name[end + 1 :]
        host = server_name[: end + 1]
        if rest.startswith(":"):
            return host, rest[1:]
        if rest:
            # Trailing junk after ']' is kept on the host so validation rejects it.
            return server_name, None
        return host, None
    host, sep, port = server_name.rpartition(":")
    if not sep:
        return server_name, None
    return host, port


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """A valid server name as (host without IPv6 brackets, port or None), for connecting."""
    host, port = _split_port(server_name)
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port) if port else None


def strip_port(server_name: str) -> str:
    """``server_name`` without its ``:port``, keeping IPv6 brackets (SS §ACLs: ports ignored)."""
    return _split_port(server_name)[0]


def is_ip_literal(server_name: str) -> bool:
    """Whether the host part of ``server_name`` is an IPv4 or bracketed IPv6 literal."""
    host = strip_port(server_name)
    # APPX §Server Name: hostname = IPv4address / "[" IPv6address "]" / dns-name. A host that
    # resolvers read as a number is an IP literal too, whatever its spelling (server ACLs).
    return host.startswith("[") or _ends_in_number(host)


def _ends_in_number(host: str) -> bool:
    return _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]) is not None


def _is_valid_host(host: str) -> bool:
    if host.startswith("["):
        # APPX §Server Name: "[" IPv6address "]"; also require a real IPv6 address.
        inner = host[1:-1] if host.endswith("]") else ""
        if _IPV6_ADDRESS.fullmatch(inner) is None:
            return False
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return False
        return True
    if _ends_in_number(host):
        return _IPV4_ADDRESS.fullmatch(host) is not None
    return len(host) <= MAX_DNS_NAME_CHARS and all(
        _is_dns_label(label) for label in host.split(".")
    )


def _is_dns_label(label: str) -> bool:
    if _DNS_LABEL.fullmatch(label) is None:
        return False
    if label[:4].lower() != "xn--":
        return True
    # RFC 5890 §2.3.2.1: an "xn--" label is an A-label, the punycode of a U-label; one that does
    # not decode (e.g. "xn--zz") names nothing and breaks IDNA in the HTTP and TLS layers.
    try:
        label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return False
    return True


def parse_server_name(s: str) -> str:
    """Check that ``s`` is a server name (APPX §Server Name) and return it unchanged."""
    if not isinstance(s, str):
        raise _invalid("Server name is not a string")
    return _parse_server_name(s)


# Server names repeat (every request names its origin, every id a server): the names found
# valid are remembered, a bounded number (lru_cache keeps no exceptions: a refused name is
# checked again each time).
@functools.lru_cache(maxsize=4096)
def _parse_server_name(s: str) -> str:
    # APPX §Server Name: the grammar caps dns-name at 255 characters (230 is only recommended,
    # so longer names from other servers are tolerated up to the grammar's limit).
    if not s or len(s) > MAX_ID_BYTES:
        raise _invalid("Server name has a bad length")
    host, port = _split_port(s)
    if not _is_valid_host(host):
        raise _invalid("Server name has a bad host")
    # APPX §Server Name: port = 1*5DIGIT; a TCP port is 1-65535.
    if port is not None and (_PORT.fullmatch(port) is None or not 1 <= int(port) <= 65535):
        raise _invalid("Server name has a bad port")
    return s


def _check_id_length(s: str) -> None:
    # CS §Size limits / APPX §Identifier Grammar: ids are at most 255 bytes including the sigil.
    if len(s.encode("utf-8")) > MAX_ID_BYTES:
        raise _invalid("Identifier is longer than 255 bytes")


def parse_user_id(s: str) -> str:
    """Check that ``s`` is a user id ``@localpart:server_name`` and return it unchanged."""
    # APPX §Historical User IDs (v1.14): servers MUST accept localparts of any non-surrogate
    # code points except ':' and NUL, control characters and the empty string included.
    if _SURROGATE.search(s) is not None:
        raise _invalid("User id has a surrogate code point")
    _check_id_length(s)
    if not s.startswith("@"):
        raise _invalid("User id must start with '@'")
    localpart, sep, server_name = s[1:].partition(":")
    if not sep:
        raise _invalid("User id needs a server name")
    if "\x00" in localpart:
        raise _invalid("User id localpart has a NUL")
    parse_server_name(server_name)
    return s


def parse_room_id(s: str) -> str:
    """Check that ``s`` is a room id (``!opaque:domain`` or the v12 hash form); return it."""
    _check_id_length(s)
    if not s.startswith("!"):
        raise _invalid("Room id must start with '!'")
    opaque, sep, server_name = s[1:].partition(":")
    if not sep:
        # rooms/v12: "!" + URL-safe unpadded base64 of the create event's reference hash.
        if _URLSAFE_B64_HASH.fullmatch(opaque) is None:
            raise _invalid("Room id has neither a domain nor a reference hash")
        return s
    # APPX §Room IDs (v1-v11): the opaque part is any code point except ':' and NUL.
    if not opaque or "\x00" in opaque:
        raise _invalid("Room id has a bad opaque part")
    parse_server_name(server_name)
    return s


def parse_event_id(s: str, room_version: RoomVersion) -> str:
    """Check that ``s`` is an event id in ``room_version``'s format and return it unchanged."""
    _check_id_length(s)
    if not s.startswith("$"):
        raise _invalid("Event id must start with '$'")
    body = s[1:]
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.V1:
        # rooms/v1 §Event IDs: "$opaque:domain"; opaque is any code point except ':' and NUL.
        opaque, sep, server_name = body.partition(":")
        if not sep or not opaque or "\x00" in opaque:
            raise _invalid("Event id must be '$opaque:domain'")
        parse_server_name(server_name)
        return s
    # rooms/v3: standard alphabet; frag/v4-event-ids: URL-safe alphabet (v4 onwards).
    pattern = _STD_B64_HASH if fmt is EventIdFormat.V3 else _URLSAFE_B64_HASH
    if pattern.fullmatch(body) is None:
        raise _invalid("Event id is not a reference hash in this room version's format")
    return s
