"""The application factory: Connexion routes and validates from the contract; state per worker."""

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from connexion import AsyncApp
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.spec import Specification
from signedjson.key import get_verify_key
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app.config import Config, load_config
from app.contracts import load_contract
from app.federation.client import FederationClient, FederationHttp
from app.federation.keyring import Keyring
from app.federation.sender import FederationSender
from app.http import errors
from app.http.access_log import AccessLogMiddleware, OperationMiddleware
from app.http.auth import SECURITY_MAP, BodyBufferMiddleware
from app.http.fast_path import FastPathMiddleware, compile_operations
from app.http.limits import RequestLimitsMiddleware
from app.http.paths import EncodedSlashMiddleware
from app.http.ratelimit import RateLimiter
from app.rooms import Resident
from app.signing_key import key_id, load_old_verify_keys, load_or_generate_signing_key
from db.dialect import redact_url
from db.store import Store
from matrix.errors import MatrixError

logger = logging.getLogger(__name__)

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi" / "federation.yaml"
# The hot path of the knock handshake (issue 7); see app/http/fast_path.py.
FAST_PATH_OPERATIONS = ["handlers.knock.make_knock"]

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def create_app(
    config: Config,
    *,
    clock: Clock = wall_clock_ms,
    spec_path: Path = SPEC_PATH,
    fast_path: bool = True,
) -> ASGIApp:
    """Build the ASGI app for ``config``. Each worker opens its own database connection.

    ``fast_path`` serves FAST_PATH_OPERATIONS through app/http/fast_path.py (same checks, a tenth of
    the per-request machinery); the tests turn it off to compare both paths.
    """

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[dict[str, Any]]:
        store = Store.open(config.database)
        signing_key = load_or_generate_signing_key(config.resolved_signing_key_path)
        # Outbound connection pools (discovery, TLS, SSRF guard): one for PDU delivery, and the
        # keyring's own, so key fetches that unsigned requests cause never delay delivery.
        http = FederationHttp(config)
        keyring = Keyring(
            store,
            config,
            clock,
            local_keys={key_id(signing_key): get_verify_key(signing_key)},
        )
        federation = FederationClient(config.server_name, signing_key, config, http=http)
        pdu_sender = FederationSender(store, federation, clock)
        # Deliveries left in the outbox (a restart, a crash, another worker, the CLI) go out.
        pdu_sender.start(retry_now=True)
        state = {
            "config": config,
            "server_name": config.server_name,
            "signing_key": signing_key,
            "old_verify_keys": load_old_verify_keys(config.old_verify_keys_path),
            "clock": clock,
            # the X-Matrix check (app/http/auth.py) reads the keyring; handlers the resident
            "keyring": keyring,
            # the X-Matrix check tells it of each authenticated origin (resets its backoff)
            "pdu_sender": pdu_sender,
            "resident": Resident(
                store,
                config.server_name,
                keyring,
                pdu_sender,
                clock,
                signing_key,
                federation,
                missing_events_timeout_s=config.missing_events_timeout_s,
            ),
            # One bucket per origin in each worker (so N workers allow up to N times the rate).
            "rate_limiter": RateLimiter(
                config.rc_federation_per_second, config.rc_federation_burst_count
            )
            if config.rc_federation_enabled
            else None,
        }
        logger.info(
            "Serving %s with key ed25519:%s, database %s",
            config.server_name,
            signing_key.version,
            redact_url(config.database),
        )
        # Everything built so far (the contract, validators, modules) lives as long as the
        # worker: move it out of the collector's sight, so full collections only walk what
        # requests allocate (they cost milliseconds of p99 otherwise, issue 7).
        gc.freeze()
        try:
            yield state
        finally:
            await pdu_sender.aclose()
            await keyring.aclose()
            await http.aclose()
            store.close()

    swagger_ui_options = SwaggerUIOptions(
        swagger_ui=bool(config.docs_path),
        swagger_ui_path=config.docs_path or "/ui",
        serve_spec=bool(config.docs_path),
    )
    connexion_app = AsyncApp(
        __name__,
        lifespan=lifespan,
        validator_map=errors.VALIDATOR_MAP,
        validate_responses=config.validate_responses,
        swagger_ui_options=swagger_ui_options,
        security_map=SECURITY_MAP,
    )
    connexion_app.add_api(
        load_contract(spec_path),
        swagger_ui_options=swagger_ui_options,
        validate_responses=config.validate_responses,
    )
    # The X-Matrix signature covers the body, which the security handler cannot read itself.
    connexion_app.add_middleware(
        BodyBufferMiddleware,
        position=MiddlewarePosition.BEFORE_SECURITY,
        max_body_bytes=config.max_request_body_bytes,
        read_timeout_s=config.request_body_timeout_s,
        max_buffered_bytes=config.max_buffered_body_bytes,
    )
    connexion_app.add_middleware(OperationMiddleware, position=MiddlewarePosition.BEFORE_SECURITY)
    connexion_app.add_error_handler(MatrixError, errors.handle_matrix_error)
    connexion_app.add_error_handler(ProblemException, errors.handle_problem)
    connexion_app.add_error_handler(HTTPException, errors.handle_http_exception)
    connexion_app.add_error_handler(Exception, errors.handle_unexpected)
    served: ASGIApp = connexion_app
    if fast_path:
        spec = Specification.load(load_contract(spec_path))
        operations = compile_operations(
            spec,
            FAST_PATH_OPERATIONS,
            SECURITY_MAP,
            validate_responses=config.validate_responses,
        )
        served = FastPathMiddleware(connexion_app, operations)
    # Ids may contain '/': both the fast path and Connexion route on a path where %2F stays
    # encoded (app/http/paths.py); rewritten once, outside both.
    served = EncodedSlashMiddleware(served, exempt_prefix=config.docs_path)
    return AccessLogMiddleware(
        RequestLimitsMiddleware(served, config.max_request_uri_bytes), federation_metrics=True
    )


def create_app_from_environment() -> ASGIApp:
    """uvicorn factory for worker processes: configuration comes from ANTECHAMBER_* variables."""
    return create_app(load_config())


def contract() -> dict[str, Any]:
    """The parsed OpenAPI document (for docs, tests and the CLI)."""
    return load_contract(SPEC_PATH)
