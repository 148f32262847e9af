"""What every command shares: the one-line refusal and the text-or-JSON output."""

import argparse
import json
from typing import Any


class CommandError(Exception):
    """A command that cannot do what was asked: one line to stderr, exit status 1."""


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with --json, else the human-readable ``text``."""
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def escape_text(text: object) -> str:
    """``text`` safe for a terminal: non-printable characters (newlines, escape sequences,
    bidi controls) written as Python escapes. Other servers' text is hostile."""
    value = text if isinstance(text, str) else str(text)
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in value)
