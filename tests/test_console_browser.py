"""The console in a real browser: Debian's headless Chromium driven by Selenium, against
``industriverse serve`` running as its own process on the embedded bus.

Screenshots of the overview and of a strike's page go to a temporary directory, or to the
directory named by INDUSTRIVERSE_SCREENSHOTS (``INDUSTRIVERSE_SCREENSHOTS=docs python -m pytest
tests/test_console_browser.py`` refreshes the README's images; a test run leaves the checkout as it
found it).  Without Chromium the tests skip locally and fail under CI=true.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from strike_helpers import ROOT, example

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.browser


def _need_browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        msg = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver; pip install selenium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url: str, *, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_browser()
    home = tmp_path_factory.mktemp("console-browser")
    env = {**os.environ, "INDUSTRIVERSE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("INDUSTRIVERSE_DB_URL", None)
    env.pop("INDUSTRIVERSE_AMQP_URL", None)

    def token(name: str, role: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cli.main", "token", "create", "--name", name, "--role", role],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    tokens = {"operator": token("alice", "operator"), "viewer": token("victor", "viewer")}
    port = _free_port()
    log = open(home / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--runs_dir", str(home / "runs"),
                             "--contracts", str(ROOT / "examples" / "contracts.yaml")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _call(base + "/healthz")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("industriverse serve did not come up: " + (home / "serve.log").read_text())
        time.sleep(0.2)
    yield {"base": base, "tokens": tokens, "home": home}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _browser(width: int = 1280, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait(driver, seconds: float):
    """A wait that retries when htmx swapped the element out from under it."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException))


def _login(driver, base: str, token: str, path: str = "/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login?next={path}")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()


@pytest.fixture(scope="module")
def operator_browser(server):
    driver = _browser()
    _login(driver, server["base"], server["tokens"]["operator"])
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def strike(server, operator_browser):
    """A strike submitted through the API while the overview is open; checks it appears and
    reaches completed on that page without a reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = operator_browser
    driver.get(server["base"] + "/")
    driver.execute_script("window.__not_reloaded = true;")
    constraint = dict(example("hvac", ensemble=100), contract_id="boptest-testcase1")  # a contract of --contracts
    status, body = _call(server["base"] + "/api/v1/strikes", token=server["tokens"]["operator"],
                         body={"domain": "hvac", "constraint": constraint})
    assert status == 202, body
    sid = body["strike_id"]
    badge = f"tr[data-strike='{sid}'] .status"
    _wait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, badge))
    _wait(driver, 120).until(
        lambda d: d.find_element(By.CSS_SELECTOR, badge).get_attribute("data-status") in ("completed", "rejected", "failed"))
    assert driver.find_element(By.CSS_SELECTOR, badge).get_attribute("data-status") == "completed"
    assert driver.execute_script("return window.__not_reloaded === true;"), "the page was reloaded"
    # the contract's row shows it as its latest strike, also without a reload
    _wait(driver, 10).until(lambda d: sid in d.find_element(By.ID, "contracts").text)
    return sid


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """Where screenshots go: INDUSTRIVERSE_SCREENSHOTS (e.g. docs) or a temporary directory."""
    chosen = os.environ.get("INDUSTRIVERSE_SCREENSHOTS")
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    path = ROOT / chosen
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_strike_appears_on_the_overview_and_completes_without_reload(server, operator_browser, strike, screenshots):
    operator_browser.save_screenshot(str(screenshots / "console-overview.png"))
    assert (screenshots / "console-overview.png").stat().st_size > 0


def test_strike_page_shows_the_states_plot(server, operator_browser, strike, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = operator_browser
    driver.get(f"{server['base']}/strikes/{strike}")
    img = driver.find_element(By.ID, "plot-states")
    driver.execute_script("arguments[0].scrollIntoView();", img)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", img))
    assert driver.find_element(By.ID, "strike-status").text == "completed"
    assert driver.find_element(By.ID, "headline").text.startswith("Per day, the plan ")
    driver.execute_script("window.scrollTo(0, 0);")
    driver.set_window_size(1280, 2200)
    driver.save_screenshot(str(screenshots / "console-strike.png"))
    driver.set_window_size(390, 1600)  # a phone's width: nothing may be wider than the screen
    assert driver.execute_script("return document.documentElement.scrollWidth;") <= 390 + 1
    driver.set_window_size(1280, 900)


def _activity(server, strike) -> str:
    status, view = _call(f"{server['base']}/api/v1/strikes/{strike}", token=server["tokens"]["viewer"])
    assert status == 200
    return view["outcome"]["activity_id"]


def test_viewer_sees_no_rollback_button_and_gets_403(server, strike):
    from selenium.webdriver.common.by import By

    activity = _activity(server, strike)
    driver = _browser()
    try:
        _login(driver, server["base"], server["tokens"]["viewer"], f"/activities/{activity}")
        assert driver.find_element(By.ID, "activity-status").get_attribute("data-status") == "active"
        assert driver.find_elements(By.ID, "rollback") == []
    finally:
        driver.quit()
    status, _ = _call(f"{server['base']}/api/v1/activities/{activity}/rollback", token=server["tokens"]["viewer"], body={})
    assert status == 403


def test_operator_rollback_changes_the_state_on_the_page(server, operator_browser, strike):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    activity = _activity(server, strike)
    driver = operator_browser
    driver.get(f"{server['base']}/activities/{activity}")
    assert driver.find_element(By.ID, "activity-status").get_attribute("data-status") == "active"
    driver.find_element(By.ID, "rollback").click()
    WebDriverWait(driver, 10).until(EC.alert_is_present()).accept()
    _wait(driver, 20).until(
        lambda d: d.find_element(By.ID, "activity-status").get_attribute("data-status") == "rolled_back")
    assert driver.find_elements(By.ID, "rollback") == []
    status, act = _call(f"{server['base']}/api/v1/activities/{activity}", token=server["tokens"]["viewer"])
    assert act["status"] == "rolled_back"
