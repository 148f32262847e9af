"""Contract fuzzing of the admin API: Schemathesis drives openapi/admin.yaml against a live
admin listener, every request with the bearer token (so it reaches the handlers). Half the
generated room ids are swapped for real rooms, user ids for users of a real fake remote (so
invites reach a server that answers). Bounded and seeded like tests/test_fuzz.py. No 5xx,
every response in the contract.
"""

import os
import time
import zlib
from pathlib import Path
from typing import ClassVar

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from app.admin_api import ADMIN_SPEC_PATH, create_admin_app
from app.admin_token import load_or_generate_admin_token
from app.config import load_config
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests import remote as remote_homeserver
from tests.databases import data_dir_env
from tests.factories import add_knock, create_room, make_room_admin
from tests.live_server import serve_in_thread
from tests.remote import RemoteHomeserver

MAX_EXAMPLES = int(os.environ.get("ANTECHAMBER_FUZZ_EXAMPLES", "25"))
SERVER_NAME = "antechamber.test"

schema = schemathesis.openapi.from_path(ADMIN_SPEC_PATH)


class BearerToken(requests.auth.AuthBase):
    token = ""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


TOKEN = BearerToken()
schema.auth.set_from_requests(TOKEN)


class Fixtures:
    rooms: ClassVar[list[str]] = []
    remote_name = ""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("fuzz-admin-data")
    ca = remote_homeserver.TestCA(tmp_path_factory.mktemp("fuzz-admin-ca"))
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(str(data_dir)),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
            "ANTECHAMBER_FEDERATION_CA_FILE": str(ca.ca_file),
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
        }
    )
    TOKEN.token = load_or_generate_admin_token(config.admin_token_path)
    with RemoteHomeserver(ca, lambda: time.time_ns() // 1_000_000) as remote:
        Fixtures.remote_name = remote.server_name
        store = Store.open(config.database)
        admin = make_room_admin(
            store, SERVER_NAME, load_or_generate_signing_key(config.resolved_signing_key_path)
        )
        Fixtures.rooms = [create_room(admin, v, "knock") for v in ("7", "11", "12")]
        for index in range(20):
            add_knock(admin, Fixtures.rooms[0], f"@fuzz{index}:{remote.server_name}", remote=remote)
        store.close()
        app = create_admin_app(
            config, clock=lambda: time.time_ns() // 1_000_000, invite_timeout_s=3
        )
        with serve_in_thread(app) as url:
            yield url


def _steer(case) -> None:
    """Deterministically point half the generated cases at real rooms and remote users."""
    params = case.path_parameters or {}
    room = params.get("roomId")
    if isinstance(room, str):
        pick = zlib.crc32(room.encode("utf-8", "surrogatepass"))
        if pick % 2 == 0:
            params["roomId"] = Fixtures.rooms[pick % len(Fixtures.rooms)]
            if "userId" in params and pick % 4 == 0:
                params["userId"] = f"@fuzz{pick % 20}:{Fixtures.remote_name}"
            body = case.body
            if isinstance(body, dict) and isinstance(body.get("user_id"), str) and pick % 4 == 0:
                body["user_id"] = f"@fuzz{pick % 97}:{Fixtures.remote_name}"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_admin_contract(case, base_url):
    _steer(case)
    case.call_and_validate(base_url=base_url)
