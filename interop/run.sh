#!/usr/bin/env bash
# `make interop`: knock on Antechamber from a real Synapse over TLS on loopback.
# Synapse comes from interop/install-synapse.sh (its own virtualenv, installed once per pin).
set -euo pipefail
cd "$(dirname "$0")/.."

SYNAPSE_PYTHON=$(bash interop/install-synapse.sh)
exec .venv/bin/python interop/run.py --synapse-python "$SYNAPSE_PYTHON" "$@"
