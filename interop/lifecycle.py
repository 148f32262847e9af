"""Interop: the knock lifecycle with a real Synapse (accept, join, chat, deny, reject, kick, leave).

Each Synapse user is driven through Synapse's client API as a person would be; Antechamber is
driven through its CLI, as its operator would. Every wait is a bounded poll. /sync is polled
with a filter that changes on every call: Synapse 1.163.2 answers identical /sync requests from
a cache for minutes (lifecycle-digest, "Traps").
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    from run import Harness

_poll = itertools.count(1)


class Step(Exception):
    """A step of a lifecycle case failed; the case stops there (its checks are recorded)."""


class Lifecycle:
    """One room's lifecycle checks against Synapse; records each check in the harness."""

    def __init__(self, h: Harness, version: str, join_rule: str):
        self.h = h
        self.version = version
        self.join_rule = join_rule
        self.case = f"lifecycle v{version} {join_rule}"
        self.room_id = ""

    # ---- Synapse side ---------------------------------------------------------------------

    def user(self, role: str) -> tuple[str, str]:
        localpart = (
            f"{role}-{self.version}-{self.join_rule.replace('_', '-')}-{secrets.token_hex(3)}"
        )
        return f"@{localpart}:{self.h.syn_name}", self.h.register_and_login(localpart)

    def client_call(self, method: str, token: str, path: str, **kw: Any) -> httpx.Response:
        with self.h.client(timeout=90) as client:
            return client.request(
                method,
                f"{self.h.syn_url}/_matrix/client/v3{path}",
                headers={"Authorization": f"Bearer {token}"},
                **kw,
            )

    def sync(self, token: str) -> dict[str, Any]:
        # Unique per call (an event type nobody sends), so Synapse's sync cache never answers:
        # a limit cycling through 50 values repeated itself within a long run.
        unseen = f"x.interop.poll.{next(_poll)}"
        flt = {"room": {"timeline": {"limit": 100, "not_types": [unseen]}, "include_leave": True}}
        response = self.client_call(
            "GET", token, "/sync", params={"timeout": "0", "filter": json.dumps(flt)}
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def room_path(self, suffix: str = "") -> str:
        return f"/rooms/{quote(self.room_id, safe='')}{suffix}"

    # ---- Antechamber side -----------------------------------------------------------------

    def cli_json(self, *args: str) -> Any:
        proc = self.h.cli(*args, "--json")
        if proc.returncode != 0:
            raise Step(
                f"antechamber {' '.join(args[:2])} exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-300:]}"
            )
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def membership(self, user_id: str) -> str | None:
        listing = self.cli_json("rooms", "members", self.room_id)
        entries = listing.get("members", listing) if isinstance(listing, dict) else listing
        for entry in entries or []:
            if isinstance(entry, dict) and user_id in (
                entry.get("user_id"),
                entry.get("user"),
                entry.get("state_key"),
            ):
                value = entry.get("membership")
                return value if isinstance(value, str) else None
        return None

    # ---- checks ---------------------------------------------------------------------------

    def check(
        self, what: str, expected: str, probe: Callable[[], tuple[bool, str]], limit: float = 20
    ) -> None:
        """Poll ``probe`` until it passes or ``limit`` s pass; record it; Step on failure."""
        started = time.monotonic()
        end = started + self.h.remaining(limit)
        while True:
            try:
                ok, got = probe()
            except (Step, httpx.HTTPError, ValueError) as exc:
                ok, got = False, f"{type(exc).__name__}: {exc}"
            if ok or time.monotonic() >= end:
                break
            time.sleep(0.5)
        self.h.record(f"{self.case}: {what}", expected, got, started, ok)
        if not ok:
            raise Step(what)

    def action(self, what: str, expected: str, run: Callable[[], tuple[bool, str]]) -> None:
        self.check(what, expected, run, limit=0)

    def wait_membership(self, what: str, user_id: str, membership: str) -> None:
        def probe() -> tuple[bool, str]:
            got = self.membership(user_id)
            return got == membership, f"membership {got}"

        self.check(what, f"rooms members: {membership}", probe)

    def knock(self, token: str) -> tuple[bool, str]:
        response = self.client_call(
            "POST",
            token,
            f"/knock/{quote(self.room_id, safe='')}",
            params={"via": self.h.ante_name},
            json={"reason": "interop lifecycle"},
        )
        return response.status_code == 200, _describe(response)

    def cli_ok(self, *args: str) -> tuple[bool, str]:
        proc = self.h.cli(*args)
        out = (proc.stdout or proc.stderr).strip()[-200:]
        return proc.returncode == 0, f"exit {proc.returncode}: {out}"

    def in_sync(self, token: str, section: str) -> tuple[bool, str]:
        rooms = self.sync(token).get("rooms", {})
        found = [
            name
            for name in ("invite", "join", "leave", "knock")
            if self.room_id in rooms.get(name, {})
        ]
        return section in found, f"room under rooms.{found}"

    def timeline_has(self, token: str, match: Callable[[dict[str, Any]], bool]) -> tuple[bool, str]:
        room = self.sync(token).get("rooms", {}).get("join", {}).get(self.room_id, {})
        events = [
            *room.get("timeline", {}).get("events", []),
            *room.get("state", {}).get("events", []),
        ]
        hit = next((e for e in events if match(e)), None)
        return hit is not None, (
            json.dumps({k: hit.get(k) for k in ("type", "sender", "content")})[:200]
            if hit
            else f"{len(events)} events, none matching"
        )

    # ---- the scenario ---------------------------------------------------------------------

    def run(self) -> None:
        h = self.h
        self.room_id = h.create_room(self.version, self.join_rule)
        alice, alice_token = self.user("alice")
        # 1. knock, accept, invite seen, join through Synapse, joined here.
        self.action("alice knocks", "200", lambda: self.knock(alice_token))
        self.action(
            "rooms accept",
            "exit 0",
            lambda: self.cli_ok("rooms", "accept", self.room_id, alice, "--reason", "welcome"),
        )
        self.check(
            "alice's /sync shows the invite",
            "rooms.invite",
            lambda: self.in_sync(alice_token, "invite"),
        )

        def join(token: str) -> tuple[bool, str]:
            response = self.client_call(
                "POST",
                token,
                f"/join/{quote(self.room_id, safe='')}",
                params={"server_name": h.ante_name},
                json={},
            )
            return response.status_code == 200, _describe(response)

        self.action("alice joins through synapse", "200", lambda: join(alice_token))
        self.wait_membership("alice joined here", alice, "join")
        # 2. a message from Synapse reaches the timeline.
        text = f"hello from synapse {secrets.token_hex(4)}"

        def send_message() -> tuple[bool, str]:
            response = self.client_call(
                "PUT",
                alice_token,
                self.room_path(f"/send/m.room.message/{secrets.token_hex(6)}"),
                json={"msgtype": "m.text", "body": text},
            )
            return response.status_code == 200, _describe(response)

        self.action("alice sends a message", "200", send_message)

        def in_timeline() -> tuple[bool, str]:
            listing = self.cli_json("rooms", "timeline", self.room_id, "--limit", "50")
            return text in json.dumps(listing), "found" if text in json.dumps(
                listing
            ) else "not yet"

        self.check("rooms timeline has it", text, in_timeline)
        # 3. the operator's message and a state change reach Synapse.
        note = f"operator says hi {secrets.token_hex(4)}"
        self.action(
            "rooms message", "exit 0", lambda: self.cli_ok("rooms", "message", self.room_id, note)
        )
        self.check(
            "alice's /sync has the operator's message",
            note,
            lambda: self.timeline_has(
                alice_token, lambda e: e.get("content", {}).get("body") == note
            ),
        )
        self.action(
            "rooms join-rule invite",
            "exit 0",
            lambda: self.cli_ok("rooms", "join-rule", self.room_id, "invite"),
        )
        self.check(
            "alice's /sync has the join rule change",
            "m.room.join_rules invite",
            lambda: self.timeline_has(
                alice_token,
                lambda e: (
                    e.get("type") == "m.room.join_rules"
                    and e.get("content", {}).get("join_rule") == "invite"
                ),
            ),
        )
        self.action(
            f"rooms join-rule {self.join_rule}",
            "exit 0",
            lambda: self.cli_ok("rooms", "join-rule", self.room_id, self.join_rule),
        )
        # 4. a second user knocks and is denied; they may knock again.
        bob, bob_token = self.user("bob")
        self.action("bob knocks", "200", lambda: self.knock(bob_token))
        self.action(
            "rooms deny",
            "exit 0",
            lambda: self.cli_ok("rooms", "deny", self.room_id, bob, "--reason", "not today"),
        )
        self.wait_membership("bob denied", bob, "leave")
        self.action("bob knocks again", "200", lambda: self.knock(bob_token))
        # 5. a third user is invited and rejects the invite through Synapse.
        carol, carol_token = self.user("carol")
        self.action(
            "rooms invite carol",
            "exit 0",
            lambda: self.cli_ok("rooms", "invite", self.room_id, carol),
        )
        self.check(
            "carol's /sync shows the invite",
            "rooms.invite",
            lambda: self.in_sync(carol_token, "invite"),
        )

        def reject() -> tuple[bool, str]:
            response = self.client_call("POST", carol_token, self.room_path("/leave"), json={})
            return response.status_code == 200, _describe(response)

        self.action("carol rejects it through synapse", "200", reject)
        self.wait_membership("carol's rejection arrived", carol, "leave")
        # 6. kick alice; a joined user leaving by themselves arrives through /send.
        dave, dave_token = self.user("dave")
        self.action(
            "rooms invite dave",
            "exit 0",
            lambda: self.cli_ok("rooms", "invite", self.room_id, dave),
        )
        self.check(
            "dave's /sync shows the invite",
            "rooms.invite",
            lambda: self.in_sync(dave_token, "invite"),
        )
        self.action("dave joins through synapse", "200", lambda: join(dave_token))
        self.wait_membership("dave joined here", dave, "join")
        self.action(
            "rooms kick alice",
            "exit 0",
            lambda: self.cli_ok("rooms", "kick", self.room_id, alice, "--reason", "bye"),
        )
        self.wait_membership("alice kicked here", alice, "leave")
        self.check(
            "alice's /sync shows the room left",
            "rooms.leave",
            lambda: self.in_sync(alice_token, "leave"),
        )

        def leave() -> tuple[bool, str]:
            response = self.client_call("POST", dave_token, self.room_path("/leave"), json={})
            return response.status_code == 200, _describe(response)

        self.action("dave leaves through synapse", "200", leave)
        self.wait_membership("dave's leave arrived through /send", dave, "leave")


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]!r}"
    if isinstance(body, dict) and "errcode" in body:
        return f"{response.status_code} {body['errcode']}: {str(body.get('error', ''))[:200]}"
    return f"{response.status_code} {json.dumps(body)[:200]}"


class Joined(Lifecycle):
    """A case that starts with a fresh room alice (on Synapse) knocked on, was accepted into
    and joined."""

    def joined_room_with_alice(self) -> tuple[str, str]:
        h = self.h
        self.room_id = h.create_room(self.version, self.join_rule)
        alice, token = self.user("alice")
        self.action("alice knocks", "200", lambda: self.knock(token))
        self.action(
            "rooms accept", "exit 0", lambda: self.cli_ok("rooms", "accept", self.room_id, alice)
        )
        self.check(
            "alice's /sync shows the invite", "rooms.invite", lambda: self.in_sync(token, "invite")
        )

        def join() -> tuple[bool, str]:
            response = self.client_call(
                "POST",
                token,
                f"/join/{quote(self.room_id, safe='')}",
                params={"server_name": h.ante_name},
                json={},
            )
            return response.status_code == 200, _describe(response)

        self.action("alice joins through synapse", "200", join)
        self.wait_membership("alice joined here", alice, "join")
        return alice, token


class Durable(Joined):
    """Issue 14: Synapse is down while the operator posts 20 messages and a kick; Antechamber
    restarts; Synapse comes back: its user's /sync shows all of them."""

    def run(self) -> None:
        h = self.h
        self.case = f"durable v{self.version}"
        alice, token = self.joined_room_with_alice()
        h.stop("synapse")
        notes = [f"while you were away {n} {secrets.token_hex(3)}" for n in range(20)]

        def post_all() -> tuple[bool, str]:
            for note in notes:
                ok, got = self.cli_ok("rooms", "message", self.room_id, note)
                if not ok:
                    return False, got
            return self.cli_ok("rooms", "kick", self.room_id, alice, "--reason", "later")

        self.action("20 messages and a kick while synapse is down", "exit 0 each", post_all)
        queued = self.cli_json("federation", "status")
        pending = sum(
            row.get("pending", 0) for row in queued if row.get("destination") == h.syn_name
        )
        self.action(
            "they wait in the outbox",
            "21 queued for synapse",
            lambda: (pending == 21, f"{pending} queued"),
        )
        h.stop("antechamber")
        h.restart("antechamber")
        h.wait_ready("antechamber", f"{h.ante_url}/_matrix/federation/v1/version", 30)
        h.restart("synapse")
        h.wait_ready("synapse", f"{h.syn_url}/health", 120)

        def all_arrived() -> tuple[bool, str]:
            rooms = self.sync(token).get("rooms", {})
            left = rooms.get("leave", {}).get(self.room_id)
            if left is None:
                return False, "room not under rooms.leave yet"
            bodies = {
                e.get("content", {}).get("body") for e in left.get("timeline", {}).get("events", [])
            }
            missing = [note for note in notes if note not in bodies]
            return not missing, f"{20 - len(missing)} of 20 messages, kicked"

        self.check(
            "alice's /sync has all 20 and the kick",
            "20 of 20 messages, kicked",
            all_arrived,
            limit=120,
        )


class Fork(Joined):
    """Issue 13: a Synapse user with power and the room's admin change the topic at the same
    moment, both events citing the same prev event; afterwards both servers hold the same
    current state (SS §Room State Resolution: the later topic, by origin_server_ts, wins on
    one mainline position).

    The fork is made real: Antechamber is down while alice sets the topic on Synapse (Synapse
    cannot deliver it and retries) and while its admin sets the topic with the CLI, on the
    state it has (the CLI delivers it to Synapse); Antechamber comes back and Synapse's next
    retry delivers alice's topic.
    """

    def run(self) -> None:
        h = self.h
        self.case = f"fork v{self.version}"
        alice, token = self.joined_room_with_alice()
        self.action(
            "rooms power alice 50",
            "exit 0",
            lambda: self.cli_ok("rooms", "power", self.room_id, alice, "50"),
        )

        def synapse_state(event_type: str) -> dict[str, Any]:
            response = self.client_call("GET", token, self.room_path(f"/state/{event_type}/"))
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        self.check(
            "synapse has alice's power",
            "users[alice] = 50",
            lambda: (
                synapse_state("m.room.power_levels").get("users", {}).get(alice) == 50,
                "power_levels seen",
            ),
        )
        h.stop("antechamber")
        from_synapse = f"from synapse {secrets.token_hex(3)}"

        def set_topic() -> tuple[bool, str]:
            response = self.client_call(
                "PUT", token, self.room_path("/state/m.room.topic/"), json={"topic": from_synapse}
            )
            return response.status_code == 200, _describe(response)

        self.action("alice sets the topic while antechamber is down", "200", set_topic)

        # Our topic is made while Antechamber is still down (the CLI works on the database and
        # delivers to Synapse itself), on the state it has: a fork whatever Synapse's timing.
        # Waiting a fixed time and making it after the restart was a race: Synapse retries a
        # refused transaction within seconds (4 s, 16 s, then a minute, jittered), and on a slow
        # machine its retry delivered alice's topic first.
        from_here = f"from antechamber {secrets.token_hex(3)}"
        self.action(
            "rooms topic, while antechamber is down, on the state before alice's",
            "exit 0",
            lambda: self.cli_ok("rooms", "topic", self.room_id, from_here),
        )
        h.restart("antechamber")
        h.wait_ready("antechamber", f"{h.ante_url}/_matrix/federation/v1/version", 30)

        def ours() -> dict[tuple[str, str], Any]:
            events = self.cli_json("rooms", "state", self.room_id)
            return {(e["type"], e["state_key"]): e["content"] for e in events}

        def theirs() -> dict[tuple[str, str], Any]:
            response = self.client_call("GET", token, self.room_path("/state"))
            response.raise_for_status()
            return {(e["type"], e["state_key"]): e["content"] for e in response.json()}

        def both_received() -> tuple[bool, str]:
            timeline = self.cli_json("rooms", "timeline", self.room_id, "--limit", "10")
            summaries = [entry.get("summary", "") for entry in timeline]
            got = [t for t in (from_synapse, from_here) if any(t in s for s in summaries)]
            return len(got) == 2, f"{len(got)} of the 2 topics in antechamber's timeline"

        # Synapse's next retry of the refused transaction, up to about 90 s away.
        self.check("antechamber received alice's topic", "both topics stored", both_received, 120)

        def forked() -> tuple[bool, str]:
            # Read-only look at our database: both topics cite the same prev events.
            database = h.tmp / "antechamber-data" / "antechamber.db"
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                rows = db.execute(
                    "SELECT json FROM events WHERE room_id = ? AND type = 'm.room.topic'"
                    " AND state_key = ''",
                    (self.room_id,),
                ).fetchall()
            prevs = {
                json.dumps(sorted(event["prev_events"]))
                for event in (json.loads(row[0]) for row in rows)
                if event["content"].get("topic") in (from_synapse, from_here)
            }
            return len(rows) >= 2 and len(prevs) == 1, f"{len(prevs)} distinct prev_events"

        self.action("the two topics are a fork", "the same prev_events", forked)

        def same_state() -> tuple[bool, str]:
            here, there = ours(), theirs()
            topics = (here.get(("m.room.topic", "")), there.get(("m.room.topic", "")))
            differ = sorted(
                str(k) for k in here.keys() | there.keys() if here.get(k) != there.get(k)
            )
            ok = not differ and topics[0] == {"topic": from_here}
            return ok, f"topics {topics}; keys differing: {differ[:3]}"

        self.check(
            "both servers hold the same current state",
            "the later topic (antechamber's) on both; no key differs",
            same_state,
            limit=60,
        )


def fork_case(h: Harness) -> None:
    with contextlib.suppress(Step):
        Fork(h, "12", "knock").run()


def durable_case(h: Harness) -> None:
    with contextlib.suppress(Step):
        Durable(h, "12", "knock").run()


def lifecycle_case(h: Harness, version: str, join_rule: str) -> None:
    # A failed step was recorded by its check; the case stops there.
    with contextlib.suppress(Step):
        Lifecycle(h, version, join_rule).run()
