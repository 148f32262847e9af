"""Slow and oversized clients against a real uvicorn with the guarded protocol (app/http/server)."""

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from app.config import load_config
from app.http.server import protocol_for
from app.main import create_app
from tests.conftest import SERVER_NAME
from tests.databases import data_dir_env
from tests.live_server import serve_in_thread

HEAD_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_BODY = 262144


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, int]]:
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(str(tmp_path / "data")),
            "ANTECHAMBER_REQUEST_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
            "ANTECHAMBER_REQUEST_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        }
    )
    with serve_in_thread(create_app(config), http=protocol_for(config)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def connect(server) -> socket.socket:
    sock = socket.create_connection(server, timeout=10)
    return sock


def read_all(sock: socket.socket, limit_s: float = 10) -> bytes:
    """Everything until the server closes the connection (bounded by ``limit_s``)."""
    sock.settimeout(limit_s)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def test_server_slow_loris_head_is_cut_off(server):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\n")
    closed = False
    # Trickle a header line every 0.2 s: the deadline counts from the head's first byte.
    for i in range(50):
        try:
            sock.sendall(b"X-Slow-%d: y\r\n" % i)
        except OSError:
            closed = True
            break
        time.sleep(0.2)
        if time.monotonic() - started > HEAD_TIMEOUT_S + 3:
            break
    response = read_all(sock, 5)
    elapsed = time.monotonic() - started
    sock.close()
    assert closed or response, "connection still open"
    assert elapsed < HEAD_TIMEOUT_S + 3
    if response:
        status, body = status_and_json(response)
        assert status == 408
        assert body["errcode"] == "M_UNKNOWN"


def test_server_silent_connection_is_closed(server):
    sock = connect(server)
    started = time.monotonic()
    response = read_all(sock, HEAD_TIMEOUT_S + 5)
    sock.close()
    assert time.monotonic() - started < HEAD_TIMEOUT_S + 2
    assert status_and_json(response)[0] == 408


def test_server_keep_alive_then_slow_second_request_is_cut_off(server):
    sock = connect(server)
    sock.sendall(b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    sock.sendall(b"\r\n")  # llhttp skips stray CRLFs without starting a request
    sock.sendall(b"GE")
    response = read_all(sock, HEAD_TIMEOUT_S + 5)
    sock.close()
    assert time.monotonic() - started < HEAD_TIMEOUT_S + 2
    assert status_and_json(response)[0] == 408


def test_server_oversized_head_is_431(server):
    sock = connect(server)
    sock.sendall(b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\n")
    try:
        for _ in range(200):  # 200 x 1 KiB header lines, never finished
            sock.sendall(b"X-Big: " + b"a" * 1024 + b"\r\n")
    except OSError:
        pass
    status, body = status_and_json(read_all(sock))
    sock.close()
    assert status == 431
    assert body["errcode"] == "M_TOO_LARGE"


def test_server_one_huge_header_value_is_431(server):
    sock = connect(server)
    with contextlib.suppress(OSError):
        sock.sendall(b"GET / HTTP/1.1\r\nAuthorization: X-Matrix " + b"a" * 200_000 + b"\r\n")
    status, _body = status_and_json(read_all(sock))
    sock.close()
    assert status == 431


def test_server_long_url_is_414_matrix_json(server):
    sock = connect(server)
    path = b"/_matrix/federation/v1/make_knock/" + b"a" * 9000 + b"/b?ver=1"
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = status_and_json(read_all(sock))
    sock.close()
    assert status == 414
    assert body["errcode"] == "M_TOO_LARGE"


def test_server_streamed_chunked_body_over_the_cap_is_413_without_reading_it_all(server):
    sock = connect(server)
    sock.sendall(
        b"PUT /_matrix/federation/v1/send_knock/%21r%3Ax/%24e HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 16384
    sent = 0
    sock.settimeout(0.01)
    response = b""
    # Up to 64 MiB offered; the server must answer long before.
    while sent < 64 * 1024 * 1024:
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        except OSError:
            break
        try:
            response = sock.recv(65536)
        except TimeoutError:
            continue
        if response:
            break
    response += read_all(sock)
    sock.close()
    status, body = status_and_json(response)
    assert status == 413
    assert body["errcode"] == "M_TOO_LARGE"
    assert sent < 4 * MAX_BODY


def test_server_declared_length_over_the_cap_is_413_at_once(server):
    sock = connect(server)
    sock.sendall(
        b"PUT /_matrix/federation/v1/send_knock/%21r%3Ax/%24e HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
    )
    status, body = status_and_json(read_all(sock))
    sock.close()
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")


def test_server_slow_body_is_408(server):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(
        b"PUT /_matrix/federation/v1/send_knock/%21r%3Ax/%24e HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":'
    )
    status, _body = status_and_json(read_all(sock, BODY_TIMEOUT_S + 5))
    sock.close()
    assert status == 408
    assert time.monotonic() - started < BODY_TIMEOUT_S + 2


def test_server_garbage_is_refused_by_the_parser(server):
    sock = connect(server)
    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100)  # a TLS hello
    response = read_all(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 400")


def test_server_other_connections_are_served_meanwhile(server):
    slow = [connect(server) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"GET /_matrix/federation/v1/version HTTP/1.1\r\n")
    fast = connect(server)
    fast.sendall(b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert fast.recv(65536).startswith(b"HTTP/1.1 200")
    for sock in [*slow, fast]:
        sock.close()


# Global caps (issue 21, finding 12) -----------------------------------------------------------

MAX_CONNECTIONS = 4


@pytest.fixture
def capped_server(tmp_path) -> Iterator[tuple[str, int]]:
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(str(tmp_path / "data")),
            "ANTECHAMBER_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "ANTECHAMBER_MAX_BUFFERED_BODY_BYTES": str(MAX_BODY),
        }
    )
    with serve_in_thread(create_app(config), http=protocol_for(config)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def test_server_connection_over_the_cap_is_503_and_closed(capped_server):
    idle = [connect(capped_server) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    extra = connect(capped_server)
    status, body = status_and_json(read_all(extra, 5))
    extra.close()
    assert (status, body["errcode"]) == (503, "M_LIMIT_EXCEEDED")
    for sock in idle:
        sock.close()
    time.sleep(0.2)
    again = connect(capped_server)
    again.sendall(
        b"GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    status, _ = status_and_json(read_all(again, 5))
    again.close()
    assert status == 200


def _withheld_body(server, declared: int, sent: int) -> socket.socket:
    sock = connect(server)
    head = (
        "PUT /_matrix/federation/v1/send_knock/%21r%3Ax/%24e HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"a" * sent)
    return sock


def test_server_bodies_buffered_at_once_are_capped(capped_server):
    # 300 withheld 250 KB bodies held 75 MB: now the sum over requests is bounded.
    first = _withheld_body(capped_server, 200_000, 150_000)
    time.sleep(0.3)
    second = _withheld_body(capped_server, 200_000, 150_000)
    status, body = status_and_json(read_all(second, 5))
    second.close()
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    first.close()
    time.sleep(0.3)
    # The first body's bytes were released with its connection.
    third = _withheld_body(capped_server, 200_000, 150_000)
    third.settimeout(0.5)
    with pytest.raises(TimeoutError):
        third.recv(1)  # still being read, not refused
    third.close()
