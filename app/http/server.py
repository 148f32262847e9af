"""uvicorn's httptools protocol with the two guards it lacks: a request-head deadline and size cap.

uvicorn (0.54) has no header-read timeout: its keep-alive timer is cancelled by any byte, so a
client that trickles a request head (slow loris) or sends nothing at all holds a connection
forever; and with httptools (what ``http="auto"`` picks when installed) nothing bounds the size
of a request head (``h11_max_incomplete_event_size`` only applies to h11). Here a request head
must be complete within ``head_timeout_s`` of its first byte (or of the connection opening) and
within ``max_head_bytes``; otherwise the client gets 408 or 431 Matrix JSON and is disconnected.
A connection past ``max_connections`` open ones gets 503 M_LIMIT_EXCEEDED and is closed at once.
Bodies have their own deadline in the app (BodyBufferMiddleware).
"""

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Config, load_config
from app.http.errors import render_error
from matrix.errors import MatrixError

logger = logging.getLogger(__name__)

_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
_ERRCODES = {431: "M_TOO_LARGE", 503: "M_LIMIT_EXCEEDED"}


def _refusal(status: int, message: str) -> bytes:
    errcode = _ERRCODES.get(status, "M_UNKNOWN")
    status, body, _ = render_error(MatrixError(errcode, message, status=status))
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout_s: float = Config.request_head_timeout_s
    max_head_bytes: int = Config.max_request_head_bytes
    max_connections: int = Config.max_connections

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0

    # The deadline ---------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self._refuse(408, f"Request head not received within {self.head_timeout_s:g}s")

    def _refuse(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        logger.info("Refusing a request from %s: %s", self.client, message)
        self.transport.write(_refusal(status, message))
        self.transport.close()

    def _is_idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    # uvicorn / asyncio hooks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Issue 21 finding 12: a global cap on open connections (per worker), so idle or slow
        # clients cannot take every file descriptor; one over the cap is told so and closed.
        if len(self.server_state.connections) > self.max_connections:
            self._refuse(503, f"More than {self.max_connections} open connections")
            return
        # A client that connects and sends nothing is cut off too.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head and self._is_idle():
            # Bytes of a new request (or stray CRLFs, which llhttp skips silently).
            self._arm_head_timer()
        super().data_received(data)
        if self._in_head and self.parser is not None:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._cancel_head_timer()
                self._refuse(431, f"Request head is larger than {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()


def protocol_for(config: Config) -> type[GuardedHttpToolsProtocol]:
    """The guarded protocol with ``config``'s limits (for an in-process uvicorn)."""
    return type(
        "ConfiguredHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "head_timeout_s": config.request_head_timeout_s,
            "max_head_bytes": config.max_request_head_bytes,
            "max_connections": config.max_connections,
        },
    )


class EnvironmentHttpToolsProtocol(GuardedHttpToolsProtocol):
    """For worker processes (``http="app.http.server:EnvironmentHttpToolsProtocol"``): the limits
    come from the same ANTECHAMBER_* configuration the workers' app factory reads."""

    _loaded = False

    def __init__(self, *args: Any, **kwargs: Any):
        cls = type(self)
        if not cls._loaded:
            config = load_config()
            cls.head_timeout_s = config.request_head_timeout_s
            cls.max_head_bytes = config.max_request_head_bytes
            cls.max_connections = config.max_connections
            cls._loaded = True
        super().__init__(*args, **kwargs)
