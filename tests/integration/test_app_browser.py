"""The Streamlit app in a real headless Chromium (Selenium + Debian's chromium-driver).

Starts ``streamlit run app.py`` on a free loopback port, loads the page, waits for the recommendation to
render, changes the GPU count and checks the page updates. Skips when chromium/chromedriver are absent
(``scripts/test.sh`` installs them on Debian when run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def app_url(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not (shutil.which("chromedriver") and (shutil.which("chromium") or shutil.which("chromium-browser"))):
        pytest.skip("chromium and chromedriver are not installed")
    pytest.importorskip("selenium")
    port = _free_port()
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not become healthy: " + (tmp_path / "streamlit.log").read_text()[-2000:])
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()


def test_app_in_a_real_browser(app_url: str, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1400,1500"):
        opts.add_argument(a)
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        opts.binary_location = binary
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.get(app_url)
        wait = WebDriverWait(driver, 150)
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Recommended:')]")))
        # Streamlit renders element by element: the metrics may land a moment after the headline
        for label in ("Energy per output token", "Saving vs vLLM default"):
            wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{label}')]")))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Energy per output token" in body and "Saving vs vLLM default" in body
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid='stPlotlyChart'] .main-svg")))
        driver.save_screenshot(str(tmp_path / "app.png"))
        if os.environ.get("RECOMMENDER_SCREENSHOT"):
            driver.save_screenshot(os.environ["RECOMMENDER_SCREENSHOT"])
        # change the GPU count: the subheader must follow
        box = driver.find_element(By.CSS_SELECTOR, "section[data-testid='stSidebar'] input[type='number']")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("2", Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'on 2 × ')]")))
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Recommended:')]")))
    finally:
        driver.quit()
