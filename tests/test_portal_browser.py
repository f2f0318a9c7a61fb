"""The portal in a real browser (Debian's chromium through chromium-driver, headless), as an office
meets it: log in, see its residents, download its list, log out; log in as the neighbouring office
and fail to reach the first one's list. The server is `trace24 portal` itself, on loopback.

CI installs chromium (.ci/run) and sets TRACE24_BROWSER_TESTS=required, so there a missing browser
fails the suite; elsewhere the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from trace24.portal.accounts import Accounts

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PASSWORD = "correct horse battery"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) and os.environ.get("TRACE24_BROWSER_TESTS") != "required",
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_portal(folder: Path, accounts: Path, port: int, *options: str) -> subprocess.Popen:
    """``trace24 portal`` on loopback, its messages in ``portal.log`` beside the accounts (a pipe
    nobody reads would fill and stop the server)."""
    command = [str(Path(sys.executable).with_name("trace24")), "portal", "--snapshot", str(folder / "t_read.duckdb"),
               "--lists", str(folder / "lists"), "--accounts", str(accounts), "--port", str(port), *options]
    log = accounts.with_name("portal.log")
    with log.open("w") as handle:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=handle, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError(f"the portal did not start: {log.read_text()[-2000:]}")


def chrome(downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def log_in(driver, base: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")     # a fresh login form (and its form token) each time
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()


def test_an_office_in_a_browser_sees_and_downloads_its_list_and_not_its_neighbours(sample_day_1, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    folder, _ = sample_day_1
    with duckdb.connect(str(folder / "t_read.duckdb"), read_only=True) as con:
        as_of = con.execute("SELECT as_of FROM snapshot_info").fetchone()[0]
        (a, file_a), (b, _) = con.execute("""
            SELECT community_code, any_value(list_file) FROM out_list_rows
            WHERE as_of = ? AND community_code IS NOT NULL GROUP BY ALL ORDER BY 1 LIMIT 2""", [as_of]).fetchall()
        names_a = {r[0][2] for r in con.execute("SELECT row_values FROM out_list_rows WHERE as_of = ? "
                                                "AND community_code = ?", [as_of, a]).fetchall()}
    accounts = Accounts(tmp_path / "portal.sqlite")
    accounts.add_user("office-a", "office", a, PASSWORD)
    accounts.add_user("office-b", "office", b, PASSWORD)
    port = free_port()
    server = start_portal(folder, tmp_path / "portal.sqlite", port)
    base = f"http://127.0.0.1:{port}"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads)
    try:
        log_in(driver, base, "office-a")
        WebDriverWait(driver, 20).until(lambda d: d.current_url == f"{base}/c/{a}")      # the Secure cookie was kept on loopback
        cells = {td.text for td in driver.find_elements(By.CSS_SELECTOR, "#list td")}
        assert names_a <= cells
        driver.find_element(By.ID, "download-csv").click()
        delivered = folder / "lists" / f"{as_of:%Y-%m-%d}" / file_a
        target = downloads / delivered.name
        deadline = time.monotonic() + 30
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.read_bytes() == delivered.read_bytes()
        driver.find_element(By.CSS_SELECTOR, "form.inline button").click()     # 退出
        WebDriverWait(driver, 20).until(lambda d: d.current_url == f"{base}/login")
        log_in(driver, base, "office-b")
        WebDriverWait(driver, 20).until(lambda d: d.current_url == f"{base}/c/{b}")
        driver.get(f"{base}/c/{a}")
        assert driver.find_element(By.ID, "error").text == "页面不存在，或您无权查看"
        assert not driver.find_elements(By.TAG_NAME, "td")                    # nothing of the list shown
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
