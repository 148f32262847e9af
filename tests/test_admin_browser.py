"""The moderators' page in a real browser: headless Chromium (Debian's chromium and
chromium-driver, through Selenium) against running federation and admin listeners, with a real
fake remote that knocks over federation. Skipped, saying why, when Chromium is not installed
(`make browser-test` and CI install it and require it: ANTECHAMBER_REQUIRE_BROWSER=1).
"""

import asyncio
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from app.admin_api import create_admin_app
from app.admin_token import load_or_generate_admin_token
from app.config import load_config
from app.main import create_app
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests import remote as remote_homeserver
from tests.databases import data_dir_env
from tests.factories import create_room, make_room_admin
from tests.live_server import serve_in_thread
from tests.remote import RemoteHomeserver
from tests.server_process import SERVER_NAME, make_knock_event, send_knock

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
XSS_REASON = "<img src=x onerror=alert(1)>"
# ANTECHAMBER_SCREENSHOT=docs/admin-page.png: where to keep a picture of the page with knocks
SCREENSHOT = os.environ.get("ANTECHAMBER_SCREENSHOT")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _require_browser() -> None:
    missing = [
        name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        why = (
            f"no {', '.join(missing)}: apt-get install chromium chromium-driver (make browser-test)"
        )
        if os.environ.get("ANTECHAMBER_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def browser():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def servers(tmp_path):
    ca = remote_homeserver.TestCA(tmp_path / "ca")
    config = load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(str(tmp_path / "data")),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
            "ANTECHAMBER_FEDERATION_CA_FILE": str(ca.ca_file),
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
        }
    )
    store = Store.open(config.database)
    key = load_or_generate_signing_key(config.resolved_signing_key_path)
    room_id = create_room(make_room_admin(store, SERVER_NAME, key, wall_clock_ms), "12", "knock")
    token = load_or_generate_admin_token(config.admin_token_path)
    with (
        RemoteHomeserver(ca, wall_clock_ms) as remote,
        serve_in_thread(create_app(config)) as federation_url,
        serve_in_thread(create_admin_app(config, clock=wall_clock_ms)) as admin_url,
    ):
        yield {
            "remote": remote,
            "federation": federation_url,
            "admin": admin_url,
            "room_id": room_id,
            "token": token,
            "store": store,
        }
    store.close()


def knock(servers, localpart: str, reason: str) -> str:
    """The remote's user knocks over federation: make_knock, sign, send_knock."""
    remote, room_id = servers["remote"], servers["room_id"]
    user_id = f"@{localpart}:{remote.server_name}"

    async def run() -> None:
        async with httpx.AsyncClient(base_url=servers["federation"], timeout=10) as client:
            event, event_id = await make_knock_event(client, remote, room_id, user_id, reason)
            result = await send_knock(client, remote, event, event_id)
            assert result.status == 200, result.body

    asyncio.run(run())
    return user_id


def membership(servers, user_id: str) -> str | None:
    event = servers["store"].get_current_state_event(servers["room_id"], "m.room.member", user_id)
    return None if event is None else event["content"]["membership"]


def test_browser_knock_queue_accept_deny_and_hostile_reason(browser, servers):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 15)
    browser.get(servers["admin"] + "/_antechamber/admin/")
    browser.find_element(By.ID, "token").send_keys(servers["token"])
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    row = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#rooms tbody tr[data-room-id]")))
    row.click()
    wait.until(ec.visibility_of_element_located((By.ID, "no-knocks")))
    assert not browser.find_element(By.ID, "login").is_displayed()

    # Knocks arrive over federation while the page is open: they appear without a reload.
    alice = knock(servers, "alice", "I was at the meetup")
    bob = knock(servers, "bob", XSS_REASON)
    carol = knock(servers, "carol", "Friend of alice")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#knocks tbody tr")) == 3)
    wait.until(lambda d: "3" in d.find_element(By.CSS_SELECTOR, "#rooms .count").text)

    def knock_row(user_id: str):
        return browser.find_element(By.CSS_SELECTOR, f'#knocks tbody tr[data-user-id="{user_id}"]')

    # Hostile text is shown as text, and nothing of it runs.
    reason_cell = knock_row(bob).find_element(By.CSS_SELECTOR, "td.reason")
    assert reason_cell.text == XSS_REASON
    assert browser.find_elements(By.CSS_SELECTOR, "#knocks img, img") == []
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    if SCREENSHOT:
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(SCREENSHOT)

    # Accept: an invite over federation, which the fake remote receives.
    knock_row(alice).find_element(By.CSS_SELECTOR, "button.accept").click()
    wait.until(lambda d: "Invited" in d.find_element(By.ID, "result").text)
    assert len(servers["remote"].invites) == 1
    assert servers["remote"].invites[0][2]["event"]["state_key"] == alice
    assert membership(servers, alice) == "invite"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#knocks tbody tr")) == 2)

    # Deny, with a reason: the leave is recorded.
    knock_row(bob).find_element(By.CSS_SELECTOR, "button.deny").click()
    form = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".deny-form")))
    form.find_element(By.NAME, "reason").send_keys("no scripts here")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: "Denied" in d.find_element(By.ID, "result").text)
    event = servers["store"].get_current_state_event(servers["room_id"], "m.room.member", bob)
    assert event["content"] == {"membership": "leave", "reason": "no scripts here"}
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#knocks tbody tr")) == 1)

    # A refused accept shows the remote's error.
    servers["remote"].invite_mode = "forbidden"
    knock_row(carol).find_element(By.CSS_SELECTOR, "button.accept").click()
    wait.until(lambda d: "M_FORBIDDEN" in d.find_element(By.ID, "result").text)
    assert membership(servers, carol) == "knock"
    timeline = browser.find_element(By.ID, "timeline").text
    assert "denied the knock" in timeline
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
