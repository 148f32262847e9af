"""Contract fuzzing: Schemathesis drives the whole contract against a live server.

Every generated request is signed with X-Matrix by a real remote homeserver (its own key, its key
document served over HTTPS), so fuzzing reaches the handlers instead of stopping at 401. Half of
the generated room ids are swapped for rooms that really exist (one per knock room version), and
user ids for users of the remote, so the deeper checks run too. Bounded and seeded in
`make test` (ANTECHAMBER_FUZZ_EXAMPLES, default 25 per operation); `make fuzz` runs thousands.
No 5xx, every response in the contract.
"""

import json
import os
import time
import zlib
from pathlib import Path
from typing import ClassVar

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from app.config import load_config
from app.main import SPEC_PATH, create_app
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests import remote as remote_homeserver
from tests.databases import data_dir_env
from tests.factories import add_member, create_room, make_room_admin
from tests.live_server import serve_in_thread
from tests.remote import RemoteHomeserver

MAX_EXAMPLES = int(os.environ.get("ANTECHAMBER_FUZZ_EXAMPLES", "25"))
SERVER_NAME = "antechamber.test"

schema = schemathesis.openapi.from_path(SPEC_PATH)


class XMatrixSigner(requests.auth.AuthBase):
    """Signs the prepared request exactly as it goes on the wire (method, raw path, body)."""

    remote: RemoteHomeserver | None = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert self.remote is not None
        content = None
        if request.body:
            try:
                content = json.loads(request.body)
            except ValueError:
                content = None  # not JSON: the server answers M_NOT_JSON whatever we sign
        request.headers["Authorization"] = self.remote.auth_header(
            request.method, request.path_url, SERVER_NAME, content
        )
        return request


SIGNER = XMatrixSigner()
schema.auth.set_from_requests(SIGNER)


class Fixtures:
    """What the module fixture made, for _steer (which runs inside Hypothesis, not a fixture)."""

    rooms: ClassVar[list[str]] = []
    remote_name = ""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("fuzz-data")
    ca = remote_homeserver.TestCA(tmp_path_factory.mktemp("fuzz-ca"))
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(str(data_dir)),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
            "ANTECHAMBER_FEDERATION_CA_FILE": str(ca.ca_file),
            "ANTECHAMBER_KEY_FETCH_TIMEOUT_S": "5",
            # The remote listens on loopback (denied by default); fuzzing is one fast origin.
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
            "ANTECHAMBER_RC_FEDERATION_ENABLED": "false",
        }
    )
    with RemoteHomeserver(ca, lambda: time.time_ns() // 1_000_000) as remote:
        SIGNER.remote = remote
        Fixtures.remote_name = remote.server_name
        store = Store.open(config.database)
        admin = make_room_admin(
            store, SERVER_NAME, load_or_generate_signing_key(config.resolved_signing_key_path)
        )
        Fixtures.rooms = [create_room(admin, v, "knock") for v in ("7", "10", "11", "12")]
        # A public room, so generated make_join/send_join cases reach the join rules too.
        Fixtures.rooms.append(create_room(admin, "12", "public"))
        add_member(admin, Fixtures.rooms[0], f"@joined:{remote.server_name}", remote=remote)
        store.close()
        with serve_in_thread(create_app(config)) as url:
            yield url


def _steer(case) -> None:
    """Deterministically point half the generated cases at real rooms and remote users."""
    params = case.path_parameters or {}
    room = params.get("roomId")
    if isinstance(room, str):
        pick = zlib.crc32(room.encode("utf-8", "surrogatepass"))
        if pick % 2 == 0:
            params["roomId"] = Fixtures.rooms[pick % len(Fixtures.rooms)]
            user = params.get("userId")
            if isinstance(user, str) and pick % 4 == 0:
                params["userId"] = f"@fuzz{pick % 97}:{Fixtures.remote_name}"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_contract(case, base_url):
    _steer(case)
    response = case.call_and_validate(base_url=base_url)
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    key = f"{case.method.upper()} {case.path} [{mode}]"
    CASES[key] = CASES.get(key, 0) + 1
    STATUSES[response.status_code] = STATUSES.get(response.status_code, 0) + 1


# Cases run per operation and generation mode, and statuses seen; `make fuzz` writes them to
# ANTECHAMBER_FUZZ_REPORT so a run can show how many signed cases each operation got.
CASES: dict[str, int] = {}
STATUSES: dict[int, int] = {}


@pytest.fixture(scope="module", autouse=True)
def fuzz_report():
    yield
    report = os.environ.get("ANTECHAMBER_FUZZ_REPORT")
    if report:
        document = {"max_examples": MAX_EXAMPLES, "cases": CASES, "statuses": STATUSES}
        Path(report).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
