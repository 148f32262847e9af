"""Server ACL matching for m.room.server_acl (SS §Server Access Control Lists, knock-digest §3)."""

import functools
import re
from collections.abc import Mapping

from matrix.errors import MatrixError
from matrix.ids import is_ip_literal, strip_port


@functools.lru_cache(maxsize=4096)
def _glob_to_regex(glob: str) -> re.Pattern[str]:
    """Compile an ACL glob into a whole-name, case-insensitive regex.

    APPX §Glob-style matching: ``*`` is zero or more characters, ``?`` exactly one, everything
    else literal (so regex metacharacters are escaped). The segments between stars are matched
    leftmost-first inside atomic groups, which gives the same answer as plain ``.*`` but cannot
    backtrack exponentially on hostile globs such as ``*a*a*a*a*a*b``.
    """
    segments = ["".join("." if ch == "?" else re.escape(ch) for ch in s) for s in glob.split("*")]
    if len(segments) == 1:
        pattern = segments[0]
    else:
        middle = "".join(f"(?>.*?{segment})" for segment in segments[1:-1])
        pattern = f"{segments[0]}{middle}.*{segments[-1]}"
    # SS §ACLs (v1.19, MSC4436): matching is case-insensitive.
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


def _matches_any(host: str, globs: object) -> bool:
    # Practice (Synapse): a non-list allow/deny is treated as empty; non-string entries ignored.
    if not isinstance(globs, list):
        return False
    return any(
        isinstance(glob, str) and _glob_to_regex(glob).fullmatch(host) is not None for glob in globs
    )


def is_server_allowed(server_name: str, acl_content: Mapping[str, object] | None) -> bool:
    """Whether ``server_name`` passes the room's server ACL content (None = no ACL event)."""
    # acl-schema: with no m.room.server_acl event in the room, every server is allowed.
    if acl_content is None:
        return True
    # SS §ACLs: ports are ignored; IPv6 literals keep their brackets.
    host = strip_port(server_name)
    # acl-schema: allow_ip_literals defaults to true, also when it is not a boolean.
    if acl_content.get("allow_ip_literals", True) is False and is_ip_literal(host):
        return False
    # acl-schema: deny is checked before allow.
    if _matches_any(host, acl_content.get("deny")):
        return False
    # acl-schema: allow defaults to [], which denies everyone.
    return _matches_any(host, acl_content.get("allow"))


def check_server_acl(server_name: str, acl_content: Mapping[str, object] | None) -> None:
    """Raise M_FORBIDDEN if the room's server ACL denies ``server_name`` (SS §ACLs: 403)."""
    if not is_server_allowed(server_name, acl_content):
        raise MatrixError("M_FORBIDDEN", f"Server {strip_port(server_name)} is banned by the ACL")
