"""A real browser for the tests: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (never a driver or browser downloaded at run time).

:func:`chromium_available` says what is missing; :func:`start_chromium` starts one with a
fresh profile in ``profile_dir`` and the switches a closed network needs (no background
connections to outside hosts). ``javascript=False`` proves a page works without it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SWITCHES = (
    "--headless=new",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--password-store=basic",
)


def chromium_available() -> str | None:
    """None when the browser can run here, else what to install."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "Chromium is not installed (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "Selenium is not installed (pip install selenium, in the dev extras)"
    return None


def start_chromium(profile_dir: str, *, javascript: bool = True) -> Any:
    """A headless Chromium under Selenium; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for switch in SWITCHES:
        options.add_argument(switch)
    options.add_argument(f"--user-data-dir={profile_dir}")
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    service = Service(CHROMEDRIVER, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver


def remove_profile(profile_dir: str) -> None:
    shutil.rmtree(profile_dir, ignore_errors=True)
