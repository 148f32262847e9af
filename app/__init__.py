"""Wiring: the Connexion app, configuration, authentication, error rendering, CLI and docs."""

import warnings

# Connexion imports starlette.testclient at import time, which warns about httpx on every start;
# the server never uses the test client, so the warning is noise in operators' logs.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
