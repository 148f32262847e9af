"""Request bodies typed by the contract, handed to the room service as the JSON they are."""

from collections.abc import Mapping
from typing import cast

from matrix.types import JsonDict


def as_json_dict(body: Mapping[str, object]) -> JsonDict:
    # Connexion passes the parsed JSON object, a dict; its generated TypedDict only names the
    # fields the contract checked. The room service works on the whole dict, unknown fields
    # included (they are hashed and signed), so it is passed on unchanged.
    return cast(JsonDict, body)
