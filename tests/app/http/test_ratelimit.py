"""Per-origin rate limiting: the pure token bucket, then 429s through the real app."""

from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from app.config import ConfigError, load_config
from app.http.ratelimit import MAX_TRACKED_ORIGINS, RateLimiter
from app.main import create_app
from tests.conftest import SERVER_NAME
from tests.databases import data_dir_env
from tests.handlers.knock_env import assert_error


def test_ratelimit_burst_then_refill():
    limiter = RateLimiter(per_second=2, burst_count=3)
    assert [limiter.check("a", 0) for _ in range(3)] == [None, None, None]
    assert limiter.check("a", 0) == 500  # one token comes back every 500 ms
    assert limiter.check("a", 250) == 250
    assert limiter.check("a", 500) is None
    assert limiter.check("b", 500) is None  # origins do not share a bucket


def test_ratelimit_refill_is_capped_at_burst():
    limiter = RateLimiter(per_second=1000, burst_count=2)
    assert limiter.check("a", 0) is None
    for _ in range(2):
        assert limiter.check("a", 10_000_000) is None
    assert limiter.check("a", 10_000_000) is not None


def test_ratelimit_clock_going_backwards_grants_nothing():
    limiter = RateLimiter(per_second=1, burst_count=1)
    assert limiter.check("a", 10_000) is None
    assert limiter.check("a", 0) is not None
    assert limiter.check("a", 10_500) is not None


def test_ratelimit_memory_is_bounded_by_forgetting_full_buckets():
    limiter = RateLimiter(per_second=10, burst_count=1)
    for i in range(MAX_TRACKED_ORIGINS):
        limiter.check(f"s{i}", 0)
    assert len(limiter) == MAX_TRACKED_ORIGINS
    limiter.check("late", 1000)  # everyone has refilled by now: forgotten
    assert len(limiter) == 1


def test_ratelimit_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(per_second=0, burst_count=1)
    with pytest.raises(ConfigError, match="rc_federation_burst_count"):
        load_config(environ={"ANTECHAMBER_RC_FEDERATION_BURST_COUNT": "0"})


def _client(federation_config, clock, **overrides):
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(federation_config.data_dir),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
            "ANTECHAMBER_FEDERATION_CA_FILE": federation_config.federation_ca_file,
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
            **overrides,
        }
    )
    return TestClient(create_app(config, clock=clock), raise_server_exceptions=False)


def _make_knock(client, remote, room="!nowhere:antechamber.test"):
    uri = (
        f"/_matrix/federation/v1/make_knock/{quote(room, safe='')}/"
        f"{quote('@a:' + remote.server_name, safe='')}?ver=12"
    )
    return client.get(uri, headers={"Authorization": remote.auth_header("GET", uri, SERVER_NAME)})


def test_ratelimit_over_the_limit_is_429_with_retry_after(federation_config, clock, remote):
    overrides = {
        "ANTECHAMBER_RC_FEDERATION_PER_SECOND": "0.5",
        "ANTECHAMBER_RC_FEDERATION_BURST_COUNT": "3",
    }
    with _client(federation_config, clock, **overrides) as client:
        for _ in range(3):
            assert_error(_make_knock(client, remote), 404, "M_NOT_FOUND")
        response = _make_knock(client, remote)
        body = assert_error(response, 429, "M_LIMIT_EXCEEDED")
        assert body["retry_after_ms"] == 2000
        assert response.headers["retry-after"] == "2"
        # Unsigned requests are refused before the limiter: they cannot spend an origin's tokens.
        assert_error(
            client.get("/_matrix/federation/v1/make_knock/x/y?ver=1"), 401, "M_UNAUTHORIZED"
        )
        clock.now_ms += 2000
        assert_error(_make_knock(client, remote), 404, "M_NOT_FOUND")
        assert_error(_make_knock(client, remote), 429, "M_LIMIT_EXCEEDED")


def test_ratelimit_can_be_lifted(federation_config, clock, remote):
    overrides = {
        "ANTECHAMBER_RC_FEDERATION_ENABLED": "false",
        "ANTECHAMBER_RC_FEDERATION_PER_SECOND": "0.01",
        "ANTECHAMBER_RC_FEDERATION_BURST_COUNT": "1",
    }
    with _client(federation_config, clock, **overrides) as client:
        for _ in range(5):
            assert_error(_make_knock(client, remote), 404, "M_NOT_FOUND")


def test_ratelimit_defaults_are_generous():
    config = load_config(environ={})
    assert config.rc_federation_enabled
    assert config.rc_federation_burst_count >= 100
    assert config.rc_federation_per_second >= 10
