"""The console as a test drives it: selenium's blocking calls, run off the event loop.

The app under test serves on the test's event loop, so every call into the browser runs in a
thread (`asyncio.to_thread`); waits poll the page for a condition (`until`), never sleep for
a fixed time. Everything the browser logs is kept, and `errors()` gives its SEVERE entries:
a script error, a refused request, a Content-Security-Policy violation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.harness import Client

T = TypeVar("T")

WAIT_S = 20
"""The longest a condition may take: a backstop, reached only when something is wrong."""


class ConsolePage:
    """The console in one browser tab."""

    def __init__(self, driver: Chrome) -> None:
        self.driver = driver
        self.log: list[dict[str, Any]] = []

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    async def until(
        self, condition: Callable[[WebDriver], T | None], timeout_s: float = WAIT_S
    ) -> T:
        """What `condition` gives once it gives something truthy; fail after `timeout_s`."""
        wait = WebDriverWait(self.driver, timeout_s, poll_frequency=0.05)
        found: T = await self.run(wait.until, condition)
        return found

    async def script(self, source: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, source, *args)

    async def open(self, client: Client, *, live: bool = True) -> None:
        """Load the console of `client`'s app; with `live`, until its feed is connected."""
        await self.run(self.driver.get, str(client.make_url("/")))
        if live:
            await self.until(lambda d: self.feed_state(d) == "live")

    async def reload(self) -> None:
        await self.run(self.driver.refresh)

    def feed_state(self, driver: WebDriver) -> str:
        state: str = driver.find_element(By.ID, "feed-state").get_attribute("data-state") or ""
        return state

    async def forget(self) -> None:
        """Start from a blank tab, with no key kept and nothing logged."""
        await self.run(self.driver.get, "about:blank")
        await self.run(self.driver.get_log, "browser")

    async def leave(self) -> None:
        """Leave the console for a blank page, keeping what it logged until then."""
        await self.errors()
        await self.run(self.driver.get, "about:blank")

    async def errors(self) -> list[str]:
        """Every SEVERE entry the browser logged since the test began."""
        self.log.extend(await self.run(self.driver.get_log, "browser"))
        return [entry["message"] for entry in self.log if entry["level"] == "SEVERE"]

    async def find(self, css: str) -> WebElement:
        return await self.until(lambda d: _visible(d, css))

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self.run(element.click)

    async def type(self, css: str, text: str) -> None:
        element = await self.find(css)
        await self.run(element.clear)
        await self.run(element.send_keys, text)

    async def choose(self, css: str, value: str) -> None:
        element = await self.find(css)
        await self.run(Select(element).select_by_value, value)

    async def order_type(self, kind: str) -> None:
        await self.click(f'#order-form input[value="{kind}"] + span')

    async def text(self, css: str) -> str:
        element = await self.find(css)
        return await self.run(lambda: element.text)

    async def shows(self, css: str, phrase: str) -> None:
        """Until the element's text has `phrase`."""
        await self.until(lambda d: phrase in d.find_element(By.CSS_SELECTOR, css).text)

    async def row_status(self, order_id: str, status: str) -> WebElement:
        """The order's row, once the table shows it in `status`."""
        css = f'#orders tr[data-order-id="{order_id}"][data-status="{status}"]'
        return await self.find(css)

    async def new_row(self, known: set[str], status: str | None = None) -> str:
        """The id of the first order in the table not among `known` (in `status`, if given)."""

        def appeared(driver: WebDriver) -> str | None:
            for row in driver.find_elements(By.CSS_SELECTOR, "#orders tbody tr"):
                order_id = row.get_attribute("data-order-id")
                if order_id not in known and status in (None, row.get_attribute("data-status")):
                    return order_id
            return None

        return await self.until(appeared)

    async def rows(self) -> set[str]:
        ids = await self.script(
            "return [...document.querySelectorAll('#orders tbody tr')].map(r => r.dataset.orderId)"
        )
        return set(ids)

    async def session_item(self, name: str) -> str | None:
        item: str | None = await self.script("return sessionStorage.getItem(arguments[0])", name)
        return item


def _visible(driver: WebDriver, css: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found and found[0].is_displayed() else None
