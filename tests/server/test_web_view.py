"""The web view at ``/`` in a real headless Chromium: one pane per worker fills in, then the answer."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        reason = (
            "headless Chromium not found (install Debian's `chromium chromium-driver` as root: "
            "apt-get install -y chromium chromium-driver)"
        )
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return browser, driver


@pytest.fixture
def browser():
    binary, driver_path = _chromium()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="hogwild-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as e:  # noqa: BLE001 - any launch failure means no browser on this machine
        reason = f"Chromium could not start: {type(e).__name__}: {str(e).splitlines()[0]}"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_web_view_shows_one_pane_per_worker_and_the_answer(server, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    assert "hogwild" in browser.title
    task = browser.find_element(By.ID, "task")
    task.clear()
    task.send_keys("What is 12345 * 6789? Then add 1000.")
    workers = browser.find_element(By.ID, "workers")
    workers.clear()
    workers.send_keys("3")
    browser.find_element(By.ID, "calculator").click()  # off: the tiny model's calls are long gibberish
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
    )
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", (
        browser.find_element(By.ID, "status").text
    )
    panes = browser.find_elements(By.CSS_SELECTOR, ".pane.worker")
    assert [p.get_attribute("data-worker") for p in panes] == ["Alice", "Bob", "Carol"]
    for p in panes:
        name = p.get_attribute("data-worker")
        assert p.find_element(By.CSS_SELECTOR, ".text").text.startswith(f"**{name} [1]:**")
    assert "done" in browser.find_element(By.ID, "status").text
    answer = browser.find_element(By.ID, "answer")
    assert answer.get_attribute("data-final") == "1"
    print("ANSWER:", repr(answer.text), "| STATUS:", browser.find_element(By.ID, "status").text)
    shot = Path(tempfile.gettempdir()) / "server-web-view-tiny.png"  # docs/images has the real model's
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
