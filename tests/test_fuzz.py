"""Contract fuzzing: Schemathesis drives the whole contract against a live server.

Bounded and seeded in `make test` (ANTECHAMBER_FUZZ_EXAMPLES, default 25 per operation);
`make fuzz` runs thousands. Every response must be in the contract and no response may be a 5xx.
"""

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.config import load_config
from app.main import SPEC_PATH, create_app
from tests.live_server import serve_in_thread

MAX_EXAMPLES = int(os.environ.get("ANTECHAMBER_FUZZ_EXAMPLES", "25"))

schema = schemathesis.openapi.from_path(SPEC_PATH)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("fuzz-data")
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": "antechamber.test",
            "ANTECHAMBER_DATA_DIR": str(data_dir),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
        }
    )
    with serve_in_thread(create_app(config)) as url:
        yield url


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_contract(case, base_url):
    case.call_and_validate(base_url=base_url)
