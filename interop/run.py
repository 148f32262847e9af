"""Interop harness: a real Synapse knocks on rooms hosted by Antechamber, over TLS on loopback.

Run by `make interop` (interop/run.sh) with the project's virtualenv; Synapse runs from its own
virtualenv (``--synapse-python``). Everything lives in a fresh temporary directory: a throwaway CA
and certificates for 127.0.0.1, Antechamber's data dir, Synapse's config, database and logs. Both
servers are stopped by PID whatever happens, every wait is bounded, and the exit status is 0 only
if every check passed.

Server names are IP literals with ports (``127.0.0.1:<port>``), so neither side does .well-known or
SRV discovery: each connects straight to the other's port, with TLS verified against the CA.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trustme
from lifecycle import (
    durable_case,
    fork_case,
    lifecycle_case,
)  # interop/lifecycle.py, beside this script
from synapse_server import (
    SynapseConfig,
    generate_signing_key,
    homeserver_command,
    register_and_login,
    write_synapse_config,
)  # interop/synapse_server.py, beside this script (shared with make bench)

ROOT = Path(__file__).resolve().parent.parent
ANTECHAMBER = ROOT / ".venv" / "bin" / "antechamber"


class Timeout(Exception):
    pass


@dataclass
class Result:
    case: str
    expected: str
    got: str
    seconds: float
    ok: bool


@dataclass
class Harness:
    tmp: Path
    synapse_python: str
    deadline: float
    verbose: bool
    results: list[Result] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    ca_file: Path = Path()
    ante_port: int = 0
    syn_port: int = 0
    registration_secret: str = ""

    # ---- naming -----------------------------------------------------------------------------

    @property
    def ante_name(self) -> str:
        return f"127.0.0.1:{self.ante_port}"

    @property
    def syn_name(self) -> str:
        return f"127.0.0.1:{self.syn_port}"

    @property
    def ante_url(self) -> str:
        return f"https://127.0.0.1:{self.ante_port}"

    @property
    def syn_url(self) -> str:
        return f"https://127.0.0.1:{self.syn_port}"

    def remaining(self, cap: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Timeout("the harness's overall time budget is used up")
        return min(cap, left)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(verify=str(self.ca_file), timeout=self.remaining(timeout))

    # ---- results ----------------------------------------------------------------------------

    def record(self, case: str, expected: str, got: str, started: float, ok: bool) -> bool:
        got = " ".join(got.split())  # one line per result, whatever a tool printed
        result = Result(case, expected, got, time.monotonic() - started, ok)
        self.results.append(result)
        mark = "PASS" if ok else "FAIL"
        print(f"  [{mark}] {case}: expected {expected}; got {got} ({result.seconds:.1f}s)")
        return ok

    # ---- setup ------------------------------------------------------------------------------

    def make_certificates(self) -> None:
        ca = trustme.CA(organization_name="Antechamber interop throwaway CA")
        self.ca_file = self.tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        for name in ("antechamber", "synapse"):
            cert = ca.issue_cert("127.0.0.1", "localhost")
            # Leaf first, then the chain: both servers load the file as a certificate chain.
            cert.cert_chain_pems[0].write_to_path(str(self.tmp / f"{name}.crt"))
            for pem in cert.cert_chain_pems[1:]:
                pem.write_to_path(str(self.tmp / f"{name}.crt"), append=True)
            cert.private_key_pem.write_to_path(str(self.tmp / f"{name}.key"))

    def antechamber_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTECHAMBER_")}
        env.update(
            {
                "ANTECHAMBER_SERVER_NAME": self.ante_name,
                "ANTECHAMBER_BIND_HOST": "127.0.0.1",
                "ANTECHAMBER_BIND_PORT": str(self.ante_port),
                "ANTECHAMBER_ADMIN_ENABLED": "false",
                "ANTECHAMBER_DATA_DIR": str(self.tmp / "antechamber-data"),
                "ANTECHAMBER_TLS_CERTIFICATE": str(self.tmp / "antechamber.crt"),
                "ANTECHAMBER_TLS_PRIVATE_KEY": str(self.tmp / "antechamber.key"),
                "ANTECHAMBER_FEDERATION_VERIFY_CERTIFICATES": "true",
                "ANTECHAMBER_FEDERATION_CA_FILE": str(self.ca_file),
                "ANTECHAMBER_KEY_FETCH_TIMEOUT_S": "10",
                # A failed fetch of Synapse's key must not poison the next case for long.
                "ANTECHAMBER_KEY_FETCH_FAILURE_BACKOFF_S": "2",
                # Synapse listens on loopback, which Antechamber refuses to reach by default.
                "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
                "ANTECHAMBER_LOG_LEVEL": "DEBUG" if self.verbose else "INFO",
            }
        )
        return env

    def write_synapse_config(self) -> SynapseConfig:
        config = write_synapse_config(
            self.tmp / "synapse",
            server_name=self.syn_name,
            port=self.syn_port,
            ca_file=self.ca_file,
            tls=(self.tmp / "synapse.crt", self.tmp / "synapse.key"),
            verbose=self.verbose,
        )
        self.logs["synapse"] = config.log
        self.registration_secret = config.registration_secret
        return config

    def generate_synapse_signing_key(self, config: SynapseConfig) -> None:
        generate_signing_key(self.synapse_python, config, timeout=self.remaining(120))

    def start(self, name: str, argv: list[str], env: dict[str, str], stdout: Path) -> None:
        self.commands[name] = (argv, env, stdout)
        with stdout.open("ab") as handle:
            self.procs[name] = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                start_new_session=True,  # a Ctrl-C to make reaches us, and we stop it by PID
            )

    def wait_ready(self, name: str, url: str, limit: float) -> None:
        """Poll ``url`` until it answers 200; bounded, and fails fast if the process died."""
        end = time.monotonic() + self.remaining(limit)
        last = "no answer yet"
        while time.monotonic() < end:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode} before ready")
            try:
                with httpx.Client(verify=str(self.ca_file), timeout=2.0) as client:
                    response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        raise Timeout(f"{name} not ready at {url} within {limit:.0f}s (last: {last})")

    def stop(self, name: str) -> None:
        """Stop one server (SIGTERM, then SIGKILL after 10 s); start(name) brings it back."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start ``name`` again as it was first started (same port, data and log file)."""
        argv, env, stdout = self.commands[name]
        self.start(name, argv, env, stdout)

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"interop: {name} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.kill()
                proc.wait(timeout=10)

    # ---- Antechamber CLI --------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ANTECHAMBER), *args],
            env=self.antechamber_env() | {"ANTECHAMBER_LOG_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
            timeout=self.remaining(60),
            check=False,
        )

    def create_room(self, version: str, join_rule: str) -> str:
        proc = self.cli("rooms", "create", "--version", version, "--join-rule", join_rule, "--json")
        if proc.returncode != 0:
            raise RuntimeError(
                f"antechamber rooms create --version {version} --join-rule {join_rule} "
                f"exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        room_id = json.loads(proc.stdout)["room_id"]
        assert isinstance(room_id, str)
        return room_id

    # ---- Synapse client API -----------------------------------------------------------------

    def register_and_login(self, localpart: str) -> str:
        with self.client() as client:
            return register_and_login(client, self.syn_url, self.registration_secret, localpart)

    def knock(self, token: str, room_id: str, reason: str) -> httpx.Response:
        with self.client(timeout=90) as client:
            return client.post(
                f"{self.syn_url}/_matrix/client/v3/knock/{quote(room_id, safe='')}",
                params={"via": self.ante_name},
                headers={"Authorization": f"Bearer {token}"},
                json={"reason": reason},
            )

    def sync_knock_state(self, token: str, room_id: str, limit: float = 15) -> Any:
        """The room's entry under rooms.knock in the user's /sync, polled for up to ``limit``s."""
        end = time.monotonic() + self.remaining(limit)
        with self.client() as client:
            while True:
                response = client.get(
                    f"{self.syn_url}/_matrix/client/v3/sync",
                    params={"timeout": "0"},
                    headers={"Authorization": f"Bearer {token}"},
                ).raise_for_status()
                entry = response.json().get("rooms", {}).get("knock", {}).get(room_id)
                if entry is not None or time.monotonic() >= end:
                    return entry
                time.sleep(0.5)


# ---- checks -------------------------------------------------------------------------------


def describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]!r}"
    if isinstance(body, dict) and "errcode" in body:
        return f"{response.status_code} {body['errcode']}: {str(body.get('error', ''))[:200]}"
    return f"{response.status_code} {json.dumps(body)[:200]}"


def find_knock(listing: Any, user_id: str) -> dict[str, Any] | None:
    """The entry for ``user_id`` in `rooms knocks --json` output (a list, or {"knocks": [...]})."""
    entries = listing.get("knocks", listing) if isinstance(listing, dict) else listing
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        user = entry.get("user_id", entry.get("user", entry.get("state_key")))
        if user == user_id:
            return entry
    return None


def check_federation_basics(h: Harness) -> None:
    """Before any knock: Synapse fetches Antechamber's key over verified TLS (notary query)."""
    started = time.monotonic()
    with h.client() as client:
        try:
            own = client.get(f"{h.ante_url}/_matrix/key/v2/server").raise_for_status().json()
            key_ids = sorted(own["verify_keys"])
            # Naming the key ids makes Synapse fetch them on a cache miss (an empty query only
            # lists what it has cached); Synapse 1.163 requires minimum_valid_until_ts here.
            criteria = {"minimum_valid_until_ts": 0}
            response = client.post(
                f"{h.syn_url}/_matrix/key/v2/query",
                json={"server_keys": {h.ante_name: dict.fromkeys(key_ids, criteria)}},
            )
            keys = response.json().get("server_keys", []) if response.status_code == 200 else []
            fetched = sorted(
                key_id
                for entry in keys
                if entry.get("server_name") == h.ante_name
                for key_id in entry.get("verify_keys", {})
            )
            ok = bool(key_ids) and fetched == key_ids
            got = f"{response.status_code}, keys {fetched}"
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            ok, got = False, f"{type(exc).__name__}: {exc}"
    h.record(
        "synapse fetches antechamber's key (TLS, key/v2/query)",
        f"200 with the key of {h.ante_name}",
        got,
        started,
        ok,
    )


def check_antechamber_authenticated_synapse(h: Harness) -> None:
    """After the knocks: Antechamber fetched Synapse's key and authenticated its X-Matrix
    requests (the access log names the origin)."""
    started = time.monotonic()
    text = h.logs["antechamber"].read_text(errors="replace")
    fetched = f"Fetched keys of {h.syn_name}" in text
    authed = len(access_lines(h, f"origin={h.syn_name} ", 0))
    h.record(
        "antechamber fetches synapse's key, checks X-Matrix",
        f"key fetched; requests with origin={h.syn_name}",
        f"key fetched: {fetched}; {authed} authenticated requests",
        started,
        fetched and authed > 0,
    )


def summarize_access(line: str) -> str:
    """'make_knock 200 origin=127.0.0.1:8449' from one Antechamber access line."""
    words = line.split(" antechamber.access: ", 1)[-1].split()
    if len(words) < 3:
        return line.strip()
    endpoint = "make_knock" if "/make_knock/" in words[1] else "send_knock"
    origin = next((w for w in words if w.startswith("origin=")), "origin=?")
    return f"{endpoint} {words[2]} {origin}"


def access_lines(h: Harness, marker: str, since: int) -> list[str]:
    text = h.logs["antechamber"].read_text(errors="replace")[since:]
    return [line for line in text.splitlines() if marker in line and "antechamber.access" in line]


def knock_case(
    h: Harness,
    label: str,
    version: str,
    join_rule: str,
    *,
    expect_ok: bool,
    before_knock: Callable[[str, str], None] | None = None,
    full: bool = True,
) -> None:
    """Create a room, register a fresh Synapse user, knock; check the answer and, for an
    accepted knock, Antechamber's pending-knock list and the user's /sync."""
    started = time.monotonic()
    localpart = f"knocker-{label.replace('_', '-')}-{secrets.token_hex(3)}"
    user_id = f"@{localpart}:{h.syn_name}"
    reason = f"interop {label}: please let me in"
    case = f"v{version} {join_rule}" + (f" ({label})" if label.startswith("ban") else "")
    try:
        room_id = h.create_room(version, join_rule)
        token = h.register_and_login(localpart)
        if before_knock:
            before_knock(room_id, user_id)
    except (RuntimeError, httpx.HTTPError, subprocess.TimeoutExpired, ValueError) as exc:
        h.record(f"{case}: setup", "room + user", f"{type(exc).__name__}: {exc}", started, False)
        return
    log_mark = h.logs["antechamber"].stat().st_size
    started = time.monotonic()
    response = h.knock(token, room_id, reason)
    got = describe(response)
    seen = access_lines(h, "/make_knock/", log_mark) + access_lines(h, "/send_knock/", log_mark)
    if seen:
        got += " | antechamber saw: " + "; ".join(summarize_access(line) for line in seen)
    if expect_ok:
        ok = response.status_code == 200 and response.json().get("room_id") == room_id
        h.record(f"{case}: knock via synapse", "200 {room_id}", got, started, ok)
        if not ok or not full:
            return
        started = time.monotonic()
        proc = h.cli("rooms", "state", room_id, "--json")
        member = None
        if proc.returncode == 0:
            member = next(
                (
                    e
                    for e in json.loads(proc.stdout)
                    if e.get("type") == "m.room.member" and e.get("state_key") == user_id
                ),
                None,
            )
        content = member.get("content", {}) if member else {}
        ok = content.get("membership") == "knock" and content.get("reason") == reason
        got = (
            f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
            if proc.returncode
            else (json.dumps(content) if member else "no m.room.member for the user")
        )
        h.record(f"{case}: knock in room state", "membership knock + reason", got, started, ok)
        started = time.monotonic()
        proc = h.cli("rooms", "knocks", room_id, "--json")
        if proc.returncode != 0:
            got, ok = (
                f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}",
                False,
            )
        else:
            try:
                entry = find_knock(json.loads(proc.stdout), user_id)
            except ValueError:
                entry = None
            ok = entry is not None and entry.get("reason") == reason
            got = json.dumps(entry) if entry else f"not listed: {proc.stdout.strip()[:300]}"
        h.record(f"{case}: rooms knocks lists it", f"{user_id} + reason", got, started, ok)
        started = time.monotonic()
        try:
            entry = h.sync_knock_state(token, room_id)
        except httpx.HTTPError as exc:
            entry, got = None, f"{type(exc).__name__}: {exc}"
        else:
            got = "room not under rooms.knock"
        if entry is not None:
            types = sorted(
                {e.get("type") for e in entry.get("knock_state", {}).get("events", [])} - {None}
            )
            ok = {"m.room.create", "m.room.join_rules"} <= set(types)
            got = f"knock_state types {types}"
        else:
            ok = False
        h.record(
            f"{case}: /sync rooms.knock",
            "knock_state has m.room.create + m.room.join_rules",
            got,
            started,
            ok,
        )
    else:
        try:
            errcode = response.json().get("errcode")
        except ValueError:
            errcode = None
        ok = response.status_code == 403 and errcode == "M_FORBIDDEN"
        h.record(f"{case}: knock refused", "403 M_FORBIDDEN", got, started, ok)


def ban(h: Harness) -> Callable[[str, str], None]:
    def before_knock(room_id: str, user_id: str) -> None:
        proc = h.cli("rooms", "ban", room_id, user_id)
        if proc.returncode != 0:
            raise RuntimeError(f"rooms ban exited {proc.returncode}: {proc.stderr.strip()}")

    return before_knock


def run_scenario(h: Harness, only: set[str] | None) -> None:
    check_federation_basics(h)
    cases: list[tuple[str, Callable[[], None]]] = [
        *(
            (f"knock-v{v}", lambda v=v: knock_case(h, f"v{v}", v, "knock", expect_ok=True))
            for v in ("7", "10", "11", "12")
        ),
        (
            "knock-restricted",
            lambda: knock_case(h, "kr10", "10", "knock_restricted", expect_ok=True),
        ),
        ("public", lambda: knock_case(h, "public", "10", "public", expect_ok=False)),
        ("invite", lambda: knock_case(h, "invite", "10", "invite", expect_ok=False)),
        (
            "banned",
            lambda: knock_case(h, "banned", "10", "knock", expect_ok=False, before_knock=ban(h)),
        ),
        # The knock leads somewhere: accept, join, chat, deny, reject, kick, leave.
        ("lifecycle-v10", lambda: lifecycle_case(h, "10", "knock")),
        ("lifecycle-v12", lambda: lifecycle_case(h, "12", "knock")),
        ("lifecycle-knock-restricted", lambda: lifecycle_case(h, "10", "knock_restricted")),
        # Durable delivery: Synapse down, events stored, both restarted, all delivered.
        ("durable", lambda: durable_case(h)),
        # State resolution: the same state key changed on both servers at once.
        ("fork", lambda: fork_case(h)),
    ]
    unknown = (only or set()) - {name for name, _ in cases}
    if unknown:
        raise RuntimeError(
            f"unknown --only case(s) {sorted(unknown)}; known: {[n for n, _ in cases]}"
        )
    for name, run in cases:
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            run()
        except Timeout as exc:
            h.record(name, "finish in time", str(exc), started, False)
            break
        except (httpx.HTTPError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            # One broken case (a timeout, a dropped connection) must not hide the others.
            h.record(name, "runs to the end", f"{type(exc).__name__}: {exc}", started, False)
    check_antechamber_authenticated_synapse(h)


# ---- main ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"(no {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def print_table(results: list[Result]) -> None:
    headers = ("case", "expected", "got", "s")
    rows = [
        (r.case, r.expected, ("ok " if r.ok else "FAIL ") + r.got[:110], f"{r.seconds:.1f}")
        for r in results
    ]
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print("\n" + line + "\n" + "-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synapse-python", required=True, help="python of Synapse's virtualenv")
    parser.add_argument("--budget", type=float, default=600, help="overall time limit, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    parser.add_argument("--verbose", action="store_true", help="DEBUG logs on both servers")
    parser.add_argument(
        "--only", action="append", help="run only these cases (knock-v7, public, banned, ...)"
    )
    args = parser.parse_args()

    # A TERM from outside (CI, make being stopped) unwinds through `finally` like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    begun = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="antechamber-interop-"))
    # Absolute but not resolved: a venv python resolved through its symlink loses the venv.
    synapse_python = os.path.abspath(args.synapse_python)
    h = Harness(tmp, synapse_python, begun + args.budget, args.verbose)
    print(f"interop: working in {tmp}")
    failed_setup: str | None = None
    try:
        h.ante_port, h.syn_port = free_port(), free_port()
        while h.syn_port == h.ante_port:
            h.syn_port = free_port()
        h.make_certificates()
        config = h.write_synapse_config()
        h.generate_synapse_signing_key(config)

        h.logs["antechamber"] = tmp / "antechamber.log"
        h.start(
            "antechamber",
            [str(ANTECHAMBER), "serve"],
            h.antechamber_env(),
            h.logs["antechamber"],
        )
        h.logs["synapse-stdout"] = tmp / "synapse" / "stdout.log"
        h.start(
            "synapse",
            homeserver_command(h.synapse_python, config),
            dict(os.environ),
            h.logs["synapse-stdout"],
        )
        print(f"interop: antechamber {h.ante_name} (pid {h.procs['antechamber'].pid}), ", end="")
        print(f"synapse {h.syn_name} (pid {h.procs['synapse'].pid})")
        started = time.monotonic()
        h.wait_ready("antechamber", f"{h.ante_url}/_matrix/federation/v1/version", 30)
        h.record("antechamber up (https)", "200 /version", "200", started, True)
        started = time.monotonic()
        h.wait_ready("synapse", f"{h.syn_url}/health", 120)
        h.record("synapse up (https)", "200 /health", "200", started, True)
        run_scenario(h, set(args.only) if args.only else None)
    except KeyboardInterrupt:
        failed_setup = "interrupted"
    except (RuntimeError, Timeout, httpx.HTTPError, subprocess.TimeoutExpired, OSError) as exc:
        failed_setup = f"{type(exc).__name__}: {exc}"
    finally:
        h.stop_all()

    if failed_setup:
        h.results.append(Result("harness", "runs to the end", failed_setup, 0.0, False))
    print_table(h.results)
    failures = [r for r in h.results if not r.ok]
    total = time.monotonic() - begun
    passed = len(h.results) - len(failures)
    print(f"\n{passed} passed, {len(failures)} failed in {total:.0f}s")
    if failures or args.keep:
        for name, path in h.logs.items():
            print(f"\n==== {name}: {path} (last 40 lines) ====\n{tail(path, 40)}")
        print(f"\ninterop: logs and config kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
