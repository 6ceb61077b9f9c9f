"""Headless Chromium for the report and listening tests: Debian's ``chromium`` driven by ``chromium-driver``
through Selenium (never a downloaded browser; ``make test`` installs both with tools/ensure_chromium.sh)."""

from __future__ import annotations

import os
import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("AUDIOBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = os.environ.get("AUDIOBENCH_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> str | None:
    """None when the browser and its driver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, DRIVER) if not (p and os.path.exists(p))]
    return ", ".join(missing) + " missing (sh tools/ensure_chromium.sh installs them)" if missing else None


def chromium(width: int = 1400, height: int = 1000) -> webdriver.Chrome:
    """A headless Chromium that may play audio without a user gesture and reads local files."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--autoplay-policy=no-user-gesture-required",
                "--allow-file-access-from-files", "--mute-audio"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)
