"""Matrix identifiers: user ids, room ids, event ids and server names (APPX §Identifier Grammar)."""


def get_domain(identifier: str) -> str:
    """The server-name part of a sigil-prefixed id (everything after the first ':')."""
    return identifier.split(":", 1)[1]
