"""The admin listener's application: openapi/admin.yaml routed and validated by Connexion,
the moderators' page, the metrics; its own store, key and federation client."""

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from connexion import AsyncApp
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app.admin_token import load_or_generate_admin_token
from app.config import Config
from app.contracts import load_contract
from app.federation.client import FederationClient, FederationHttp
from app.federation.sender import FederationSender
from app.http import errors
from app.http.access_log import AccessLogMiddleware, OperationMiddleware
from app.http.admin import (
    SECURITY_MAP,
    AdminPageMiddleware,
    AllowHeaderMiddleware,
    SecurityHeadersMiddleware,
)
from app.http.auth import BodyBufferMiddleware
from app.http.limits import RequestLimitsMiddleware
from app.http.paths import EncodedSlashMiddleware
from app.rooms.admin import RoomAdmin
from app.rooms.invite import INVITE_TIMEOUT_S
from app.rooms.moderation import Moderation
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from matrix.errors import MatrixError

logger = logging.getLogger(__name__)

ADMIN_SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "admin.yaml"

Clock = Callable[[], int]
_METHODS = ("get", "put", "post", "delete", "patch")


def create_admin_app(
    config: Config,
    *,
    clock: Clock,
    spec_path: Path = ADMIN_SPEC_PATH,
    invite_timeout_s: float = INVITE_TIMEOUT_S,
) -> ASGIApp:
    """Build the admin ASGI app for ``config``: one process serves it (see admin_server)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        store = Store.open(config.database)
        signing_key = load_or_generate_signing_key(config.resolved_signing_key_path)
        load_or_generate_admin_token(config.admin_token_path)
        http = FederationHttp(config)
        client = FederationClient(config.server_name, signing_key, config, http=http)
        # Events stored by moderators are in the durable outbox; this sender delivers them
        # at once (the workers' senders poll for whatever it leaves).
        outbox = FederationSender(store, client, clock, owner="admin")
        admin = RoomAdmin(store, config.server_name, signing_key, clock, outbox)
        state = {
            "config": config,
            "clock": clock,
            "admin_token_path": config.admin_token_path,
            "moderation": Moderation(store, admin, client, clock, invite_timeout_s),
        }
        try:
            yield state
        finally:
            await outbox.aclose()
            await http.aclose()
            store.close()

    connexion_app = AsyncApp(
        __name__,
        lifespan=lifespan,
        validator_map=errors.VALIDATOR_MAP,
        validate_responses=config.validate_responses,
        security_map=SECURITY_MAP,
    )
    connexion_app.add_api(load_contract(spec_path), validate_responses=config.validate_responses)
    connexion_app.add_middleware(
        BodyBufferMiddleware,
        position=MiddlewarePosition.BEFORE_SECURITY,
        max_body_bytes=config.max_request_body_bytes,
        read_timeout_s=config.request_body_timeout_s,
    )
    connexion_app.add_middleware(OperationMiddleware, position=MiddlewarePosition.BEFORE_SECURITY)
    connexion_app.add_error_handler(MatrixError, errors.handle_matrix_error)
    connexion_app.add_error_handler(ProblemException, errors.handle_problem)
    connexion_app.add_error_handler(HTTPException, errors.handle_http_exception)
    connexion_app.add_error_handler(Exception, errors.handle_unexpected)
    paths = {
        path: [method for method in item if method in _METHODS]
        for path, item in admin_contract(spec_path)["paths"].items()
    }
    served: ASGIApp = AllowHeaderMiddleware(connexion_app, paths)
    served = AdminPageMiddleware(EncodedSlashMiddleware(served))
    served = RequestLimitsMiddleware(served, config.max_request_uri_bytes)
    return SecurityHeadersMiddleware(AccessLogMiddleware(served))


def admin_contract(spec_path: Path = ADMIN_SPEC_PATH) -> dict[str, Any]:
    """The parsed admin OpenAPI document (for docs and tests)."""
    return load_contract(spec_path)


@contextlib.contextmanager
def admin_server(config: Config, clock: Clock) -> Iterator[uvicorn.Server]:
    """Serve the admin app on ``admin_bind_host:admin_bind_port`` in a thread of this process,
    with its own event loop, until the block ends.

    ``antechamber serve`` runs it in the main process whatever ``workers`` is: with workers,
    that process is uvicorn's supervisor, so the admin listener is bound once (no port shared
    between workers) and its writes go through one more SQLite connection, as the CLI's do.
    The metrics it serves are every process's (PROMETHEUS_MULTIPROC_DIR).
    """
    from app.http.server import protocol_for

    server = uvicorn.Server(
        uvicorn.Config(
            create_admin_app(config, clock=clock),
            host=config.admin_bind_host,
            port=config.admin_bind_port,
            http=protocol_for(config),
            log_config=None,
            access_log=False,
            timeout_keep_alive=30,
            # Signals belong to the main thread's server; this one is stopped by should_exit.
            lifespan="on",
        )
    )
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # SystemExit from a failed bind included
            failed.append(exc)

    thread = threading.Thread(target=run, name="admin-listener", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    if not server.started:
        raise RuntimeError(
            f"the admin listener could not start on {config.admin_bind_host}:"
            f"{config.admin_bind_port} ({failed[0] if failed else 'see the log'})"
        )
    logger.info(
        "Admin API and page on http://%s:%d/_antechamber/admin/",
        config.admin_bind_host,
        config.admin_bind_port,
    )
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
