"""What every command shares: the one-line refusal and the text-or-JSON output."""

import argparse
import json
from typing import Any


class CommandError(Exception):
    """A command that cannot do what was asked: one line to stderr, exit status 1."""


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with --json, else the human-readable ``text``."""
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)
