"""The admin API's bearer token: one file under the data dir, made on first start (mode 0600)."""

import contextlib
import hmac
import os
import secrets
from pathlib import Path

# 32 random bytes, URL-safe base64: 43 characters, no padding.
TOKEN_BYTES = 32


class AdminTokenError(Exception):
    """The token file cannot be read or written: one line, shown instead of a stack trace."""


def _write(path: Path, token: str) -> None:
    """Write ``token`` atomically, readable by the owner only (never wider, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    os.replace(temporary, path)


def read_admin_token(path: Path) -> str | None:
    """The current token, or None when there is no token file yet."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminTokenError(f"admin token {path}: {exc}") from None
    if not token:
        raise AdminTokenError(f"admin token {path}: the file is empty")
    return token


def load_or_generate_admin_token(path: Path) -> str:
    """The token in ``path``, generated there first if there is none."""
    token = read_admin_token(path)
    if token is None:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        _write(path, token)
    return token


def rotate_admin_token(path: Path) -> str:
    """A new token in ``path``; the old one stops working at once (the server reads the file)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    _write(path, token)
    return token


def is_admin_token(presented: str, expected: str) -> bool:
    """Constant-time comparison, so the answer's timing says nothing about the token."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
