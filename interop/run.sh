#!/usr/bin/env bash
# `make interop`: knock on Antechamber from a real Synapse over TLS on loopback.
# Synapse lives in its own virtualenv (interop/.venv-synapse) so its pins never touch the
# project's; the stamp file names the version, so re-runs reuse it and a new pin rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."

SYNAPSE_VERSION=1.163.2
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
SYNAPSE_VENV="$PWD/interop/.venv-synapse"
STAMP=$SYNAPSE_VENV/.installed-matrix-synapse-$SYNAPSE_VERSION

if [ ! -f "$STAMP" ]; then
    echo "interop: installing matrix-synapse==$SYNAPSE_VERSION into $SYNAPSE_VENV (once)"
    test -x "$SYNAPSE_VENV/bin/python" || "$PYTHON" -m venv "$SYNAPSE_VENV"
    # Binary wheels only: Synapse's Rust extension must come prebuilt (no toolchain needed).
    "$SYNAPSE_VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
        "matrix-synapse==$SYNAPSE_VERSION"
    rm -f "$SYNAPSE_VENV"/.installed-* && touch "$STAMP"
fi

exec .venv/bin/python interop/run.py --synapse-python "$SYNAPSE_VENV/bin/python" "$@"
