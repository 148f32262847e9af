"""Shared type aliases for wire JSON."""

from typing import Any

JsonDict = dict[str, Any]
