"""The federation handler test environment: our app, its store, and a real remote."""

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from app.config import Config
from app.main import create_app
from app.rooms.admin import RoomAdmin
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests.conftest import SERVER_NAME
from tests.factories import make_room_admin, signer_of


@dataclass
class KnockEnv:
    client: TestClient
    admin: RoomAdmin
    store: Store
    remote: object
    config: Config

    @property
    def remote_signer(self):
        return signer_of(self.remote)

    @property
    def user(self) -> str:
        return f"@alice:{self.remote.server_name}"

    def make_knock(
        self,
        room_id: str,
        user_id: str | None = None,
        query: str = "ver=7&ver=10&ver=11&ver=12",
        *,
        signed: bool = True,
    ):
        user_id = user_id or self.user
        uri = (
            f"/_matrix/federation/v1/make_knock/{quote(room_id, safe='')}/{quote(user_id, safe='')}"
        )
        if query:
            uri += "?" + query
        headers = (
            {"Authorization": self.remote.auth_header("GET", uri, SERVER_NAME)} if signed else {}
        )
        return self.client.get(uri, headers=headers)

    def get(self, uri: str, *, remote=None):
        """GET ``uri`` signed by ``remote`` (default: this environment's remote)."""
        server = remote or self.remote
        return self.client.get(
            uri, headers={"Authorization": server.auth_header("GET", uri, SERVER_NAME)}
        )

    def post(self, uri: str, body, *, remote=None):
        """POST ``body`` to ``uri`` signed by ``remote`` (default: this environment's remote)."""
        server = remote or self.remote
        headers = {"Authorization": server.auth_header("POST", uri, SERVER_NAME, body)}
        return self.client.post(uri, json=body, headers=headers)

    def put(self, uri: str, body, *, remote=None):
        """PUT ``body`` to ``uri`` signed by ``remote`` (default: this environment's remote)."""
        server = remote or self.remote
        headers = {"Authorization": server.auth_header("PUT", uri, SERVER_NAME, body)}
        return self.client.put(uri, json=body, headers=headers)


@pytest.fixture
def env(federation_config: Config, remote, clock) -> Iterator[KnockEnv]:
    key = load_or_generate_signing_key(federation_config.resolved_signing_key_path)
    store = Store.open(federation_config.database)
    admin = make_room_admin(store, SERVER_NAME, key, clock)
    app = create_app(federation_config, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield KnockEnv(client, admin, store, remote, federation_config)
    store.close()


def assert_error(response, status: int, errcode: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errcode"] == errcode
    assert body["error"]
    return body
