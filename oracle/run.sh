#!/usr/bin/env bash
# `make oracle`: the auth-rules differential run against the pinned Synapse (installed once by
# interop/install-synapse.sh, shared with make interop). ORACLE_CASES, ORACLE_SEED: see run.py.
set -euo pipefail
cd "$(dirname "$0")/.."

SYNAPSE_PYTHON=$(bash interop/install-synapse.sh)
exec .venv/bin/python -m oracle.run --synapse-python "$SYNAPSE_PYTHON" \
    --cases "${ORACLE_CASES:-2000}" ${ORACLE_SEED:+--seed "$ORACLE_SEED"} "$@"
