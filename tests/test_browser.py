"""The dashboard in headless Chromium (Debian's chromium and chromium-driver; .ci/run installs
them): sign in, open a flow page, read the funnel off it, keep a screenshot in docs/."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.harness import WEBHOOK_TOKEN, incoming, write_flow
from tests.served import API, threaded_app
from tests.test_stats import SCRIPT

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
SCREENSHOT = ROOT / "docs" / "dashboard-flow.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver; .ci/run does it)",
)


def test_flow_page_in_chromium(db_dsn: str, tmp_path: Path) -> None:
    """Signed in through the form, the flow page shows the scripted conversations' funnel."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    with threaded_app(db_dsn, write_flow(tmp_path / "flows")) as (url, _fake):
        message_id = 1
        for conversation_id, texts in SCRIPT.items():
            for text in texts:
                r = httpx.post(
                    f"{url}/webhooks/chatwoot",
                    params={"token": WEBHOOK_TOKEN},
                    json=incoming(conversation_id, message_id, text),
                )
                assert r.status_code == 200
                message_id += 1
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ):
            options.add_argument(argument)
        options.add_argument("--window-size=1100,1500")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
        try:
            driver.get(f"{url}/flows/vendas")
            assert driver.current_url == f"{url}/login"  # not signed in yet
            driver.find_element(By.ID, "token").send_keys(API)
            driver.find_element(By.ID, "sign-in").click()
            # The click returns before the form's POST and its redirect are done: wait for them.
            WebDriverWait(driver, 15).until(expected_conditions.url_to_be(f"{url}/"))
            driver.get(f"{url}/flows/vendas")
            funnel = {
                row.get_attribute("data-block"): {
                    cell.get_attribute("data-field"): int(cell.text)
                    for cell in row.find_elements(By.CSS_SELECTOR, "td[data-field]")
                }
                for row in driver.find_elements(By.CSS_SELECTOR, "#funnel tbody tr")
            }
            assert funnel == {
                "boas_vindas": {"entered": 4, "answered": 3, "input_failures": 3, "left_here": 1},
                "produto": {"entered": 3, "answered": 2, "input_failures": 0, "left_here": 0},
                "atendente": {"entered": 1, "answered": 0, "input_failures": 0, "left_here": 1},
                "tchau": {"entered": 1, "answered": 0, "input_failures": 0, "left_here": 0},
            }
            assert driver.find_element(By.ID, "started").text == "4"
            SCREENSHOT.parent.mkdir(exist_ok=True)
            assert driver.save_screenshot(str(SCREENSHOT))
            # Readable on a phone: nothing wider than the screen but the scrolling tables.
            driver.set_window_size(390, 844)
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390
        finally:
            driver.quit()
