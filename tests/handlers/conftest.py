"""Fixtures for the knock handler tests."""

from tests.handlers.knock_env import env  # noqa: F401  (the fixture, shared by both files)
