"""A real browser for the web tests: Debian's headless Chromium driven by
Selenium through Debian's chromedriver. Nothing is downloaded: both paths
are given, so Selenium Manager never runs (no registry serves browsers)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def chromium(downloads: Path | None = None) -> webdriver.Chrome:
    """A headless Chromium; `downloads` is where attachments land."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        # scripts/test installs both; a missing browser is a broken set-up,
        # not a reason to skip the only test of a page.
        raise RuntimeError(
            "chromium and chromium-driver (Debian) are needed: ./scripts/test installs them"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses
    # to start; the pages are our own, served on loopback.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chromium(downloads)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(downloads, ignore_errors=True)
