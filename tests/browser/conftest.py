"""A real browser for the console's tests: Debian's chromium, headless, driven by selenium.

One browser serves the whole session. Each test gets a `ConsolePage` on it, which the test
points at its own app; afterwards the page is left for a blank one before the app stops, so
that the console's reconnecting to a stopped engine is no later test's error. The tests are
skipped, saying why, where chromium or chromedriver is not installed (`make test-browser`
installs them).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tests.browser.page import ConsolePage

WINDOW = (1400, 900)


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip(
            "the console's browser tests need chromium and chromedriver "
            "(apt-get install chromium chromium-driver, or make test-browser)"
        )
    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def console(browser: webdriver.Chrome) -> AsyncIterator[ConsolePage]:
    page = ConsolePage(browser)
    await page.forget()
    yield page
    await page.leave()
