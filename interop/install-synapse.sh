#!/usr/bin/env bash
# Install the pinned Synapse into interop/.venv-synapse once (make interop, make oracle); prints its python.
# Synapse lives in its own virtualenv so its pins never touch the project's; the stamp file names
# the version, so re-runs reuse it and a new pin rebuilds it. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

SYNAPSE_VERSION=1.163.2
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
SYNAPSE_VENV="$PWD/interop/.venv-synapse"
STAMP=$SYNAPSE_VENV/.installed-matrix-synapse-$SYNAPSE_VERSION

if [ ! -f "$STAMP" ]; then
    echo "installing matrix-synapse==$SYNAPSE_VERSION into $SYNAPSE_VENV (once)" >&2
    test -x "$SYNAPSE_VENV/bin/python" || "$PYTHON" -m venv "$SYNAPSE_VENV"
    # Binary wheels only: Synapse's Rust extension must come prebuilt (no toolchain needed).
    "$SYNAPSE_VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
        "matrix-synapse==$SYNAPSE_VERSION" >&2
    rm -f "$SYNAPSE_VENV"/.installed-* && touch "$STAMP"
fi

echo "$SYNAPSE_VENV/bin/python"
