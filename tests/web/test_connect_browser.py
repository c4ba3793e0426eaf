"""The connect form in a real browser: Debian's headless Chromium, driven by Selenium, on the app served on a
loopback port. What a person (and their screen reader) meets: fields found by their labels, hints and errors
read with them, the focus on the field at fault, the password gone after an error, the spent link refused;
and Google's consent (the emulator's) sending the browser back to our callback page.

Never skipped: without Chromium the tests fail and say how to install it (`.ci/run` does).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.wait import WebDriverWait

from storage.db import Database
from storage.secrets import SecretBox
from tests.emulators.google import GoogleEmulator
from tests.web.conftest import GOOD_PASSWORD, TOKEN, Accounts, Client, context
from tests.web.oauth_sites import JOHN_GOOGLE, google_world, served
from tests.web.test_api import JOHN, created
from web.app import create_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
APPLE_HELP = "https://support.apple.com/en-us/102654"
APPLE_HELP_TITLE = "Sign in to apps with your Apple Account using app-specific passwords"
WRONG_PASSWORD = "wrong-password-shh-7"
DAV = "https://dav.example.com/"
WAIT_SECONDS = 10
T = TypeVar("T")


def headless_chrome(*arguments: str) -> Iterator[WebDriver]:
    """Debian's Chromium, headless, with `arguments` added; quit when the generator closes."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: these tests need Debian's Chromium, install it with "
                    "`apt-get install chromium chromium-driver` (.ci/run does)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,900",
                     *arguments):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def chrome() -> Iterator[WebDriver]:
    yield from headless_chrome()


@dataclass
class Site:
    """The app on a real loopback port, its links pointing there; `api` carries the bearer token, the
    browser never does."""

    api: Client

    async def user(self) -> str:
        return str((await created(await self.api.post("/api/v1/users", json=JOHN)))["id"])

    async def link(self, user_id: str, provider: str) -> str:
        body = await created(await self.api.post(f"/api/v1/users/{user_id}/connect-links",
                                                 json={"provider": provider}))
        return str(body["url"])

    async def connections(self, user_id: str) -> list[dict[str, Any]]:
        response = await self.api.get(f"/api/v1/users/{user_id}/connections")
        return list((await response.json())["items"])


@pytest.fixture
async def site(db: Database, secret_box: SecretBox, accounts: Accounts) -> AsyncIterator[Site]:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))  # bound first, so the links can name the port
    public_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    app = create_app(replace(context(db, secret_box, accounts), public_url=public_url))
    server = TestServer(app, socket_factory=lambda *_: listening)
    async with TestClient(server) as client:
        assert str(client.make_url("")).rstrip("/") == public_url
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield Site(client)


async def in_browser(steps: Callable[[], T]) -> T:
    """Selenium blocks: it runs in a thread while this loop serves the pages it asks for."""
    return await asyncio.to_thread(steps)


# What the browser sees ------------------------------------------------------------------------------------


def field(driver: WebDriver, label: str) -> WebElement:
    """The input a label names, as a screen reader finds it: `<label for>`, and its computed accessible name."""
    (element,) = driver.find_elements(By.XPATH, f'//label[normalize-space()="{label}"]')
    found = driver.find_element(By.ID, element.get_attribute("for") or "")
    assert found.accessible_name == label
    return found


def description(driver: WebDriver, element: WebElement) -> str:
    """What a screen reader reads after the label: the texts `aria-describedby` points to."""
    ids = (element.get_attribute("aria-describedby") or "").split()
    return " ".join(driver.find_element(By.ID, i).text for i in ids)


def status(driver: WebDriver) -> int:
    return int(driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus"))


def heading(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def submit(driver: WebDriver, verb: str) -> None:
    (button,) = driver.find_elements(By.XPATH, f'//button[normalize-space()="{verb}"]')
    assert button.aria_role == "button"
    before = driver.execute_script("return performance.timeOrigin")
    button.click()
    # The next page replaced the form: a new document has a new time origin. Asking the old button whether it
    # went stale can fail with an inspector error while the document is being swapped (seen under load).
    WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return performance.timeOrigin") != before)
    WebDriverWait(driver, WAIT_SECONDS).until(EC.presence_of_element_located((By.TAG_NAME, "h1")))


def fill(driver: WebDriver, values: dict[str, str]) -> None:
    for label, value in values.items():
        element = field(driver, label)
        element.clear()
        element.send_keys(value)


LABELS = {
    "icloud": [("Apple Account", "username", "email address you sign in to iCloud"),
               ("App-specific password", "current-password", "Not your Apple Account password")],
    "caldav": [("Server URL", "url", "starting with https://"),
               ("Username", "username", "sign in to that server"),
               ("Password", "current-password", "app password")],
}


@pytest.mark.parametrize("provider", ["icloud", "caldav"])
async def test_every_field_is_found_by_its_label_with_its_hint(
    site: Site, chrome: WebDriver, provider: str
) -> None:
    link = await site.link(await site.user(), provider)

    def read_the_form() -> None:
        chrome.get(link)
        assert status(chrome) == 200
        assert chrome.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert chrome.find_element(By.TAG_NAME, "main").aria_role == "main"
        assert heading(chrome) == ("Connect iCloud" if provider == "icloud" else "Connect your CalDAV server")
        for label, autocomplete, hint in LABELS[provider]:
            element = field(chrome, label)
            assert element.get_attribute("autocomplete") == autocomplete and element.get_attribute("required")
            assert hint in description(chrome, element)
            assert element.get_attribute("aria-invalid") is None

        apple = chrome.find_elements(By.PARTIAL_LINK_TEXT, APPLE_HELP_TITLE)
        if provider == "icloud":  # in the password's hint, so read with it; never followed here (no network)
            (help_link,) = apple
            assert help_link.get_attribute("href") == APPLE_HELP and help_link.get_attribute("target") == "_blank"
            assert set((help_link.get_attribute("rel") or "").split()) == {"noopener", "noreferrer"}
            assert APPLE_HELP_TITLE in description(chrome, field(chrome, "App-specific password"))
        else:
            assert apple == []

        ActionChains(chrome).send_keys(Keys.TAB).perform()  # the keyboard reaches the first field, visibly
        first = field(chrome, LABELS[provider][0][0])
        assert chrome.switch_to.active_element == first
        assert chrome.execute_script("return getComputedStyle(arguments[0]).outlineStyle", first) == "solid"

    await in_browser(read_the_form)


LOGINS = {
    "icloud": ("Connect iCloud", {"Apple Account": "john@icloud.example"}, "App-specific password"),
    "caldav": ("Connect your CalDAV server", {"Server URL": DAV, "Username": "john"}, "Password"),
}


@pytest.mark.parametrize("provider", ["icloud", "caldav"])
async def test_a_wrong_password_is_an_inline_error_then_the_right_one_connects_and_spends_the_link(
    site: Site, chrome: WebDriver, accounts: Accounts, provider: str
) -> None:
    user_id = await site.user()
    link = await site.link(user_id, provider)
    title, typed, password_label = LOGINS[provider]

    def type_a_wrong_password() -> None:
        chrome.get(link)
        fill(chrome, typed | {password_label: WRONG_PASSWORD})
        submit(chrome, "Connect")
        assert status(chrome) == 422 and chrome.title == f"Error: {title}"
        (alert,) = chrome.find_elements(By.CSS_SELECTOR, "[role=alert]")
        assert alert.aria_role == "alert" and "refused this" in alert.text and alert.is_displayed()
        password = field(chrome, password_label)
        assert password.get_attribute("aria-invalid") == "true"
        assert alert.text in description(chrome, password)
        assert chrome.switch_to.active_element == password  # typing goes straight into the field at fault
        assert password.get_property("value") == ""
        assert WRONG_PASSWORD not in chrome.page_source
        for label, value in typed.items():  # everything else stays as typed
            assert field(chrome, label).get_property("value") == value
            assert field(chrome, label).get_attribute("aria-invalid") is None

    await in_browser(type_a_wrong_password)
    assert await site.connections(user_id) == []

    def type_the_right_one() -> str:
        field(chrome, password_label).send_keys(GOOD_PASSWORD)
        submit(chrome, "Connect")
        assert status(chrome) == 200
        page = chrome.find_element(By.TAG_NAME, "main").text
        assert GOOD_PASSWORD not in chrome.page_source and chrome.get_cookies() == []
        return page

    page = await in_browser(type_the_right_one)
    account = next(iter(typed.values())) if provider == "icloud" else "john"
    assert f"Connected {account}: 2 calendars found." in page and "Work" in page
    assert "Go back to Slack." in page
    (connection,) = await site.connections(user_id)
    assert connection["provider"] == provider and connection["account"] == account
    assert connection["status"] == "ok"

    def come_back() -> None:
        chrome.refresh()  # the success page again: the form is sent once more
        assert status(chrome) == 410 and heading(chrome) == "This link no longer works"
        chrome.get(link)  # the link opened again
        assert status(chrome) == 410 and heading(chrome) == "This link no longer works"
        assert "/croco connect" in chrome.find_element(By.TAG_NAME, "main").text
        assert chrome.find_elements(By.TAG_NAME, "input") == [] and chrome.get_cookies() == []

    await in_browser(come_back)
    assert len(await site.connections(user_id)) == 1 and len(accounts.calls) == 2


async def test_an_unreachable_server_marks_the_server_url(site: Site, chrome: WebDriver, accounts: Accounts) -> None:
    link = await site.link(await site.user(), "caldav")
    accounts.unreachable_urls.add("https://down.example.com/")

    def try_a_server_that_is_down() -> None:
        chrome.get(link)
        fill(chrome, {"Server URL": "https://down.example.com/", "Username": "john", "Password": GOOD_PASSWORD})
        submit(chrome, "Connect")
        assert status(chrome) == 422
        url = field(chrome, "Server URL")
        assert url.get_attribute("aria-invalid") == "true" and chrome.switch_to.active_element == url
        assert "cannot be reached" in description(chrome, url)
        assert field(chrome, "Password").get_property("value") == ""
        assert GOOD_PASSWORD not in chrome.page_source

    await in_browser(try_a_server_that_is_down)


async def test_the_google_consent_lands_on_our_page_listing_the_calendars(
    db: Database, secret_box: SecretBox, google: GoogleEmulator, chrome: WebDriver
) -> None:
    async with served(db, secret_box, google_world(google)) as google_site:  # John, with a Team calendar
        user_id = await google_site.user()
        consent_link = await google_site.consent_link(user_id)

        def consent() -> str:
            chrome.get(consent_link)  # the emulator approves at once and sends the browser back to us
            assert status(chrome) == 200 and heading(chrome) == "Google Calendar connected"
            assert chrome.title == "Google Calendar connected"
            assert chrome.find_element(By.TAG_NAME, "main").aria_role == "main"
            assert [item.text for item in chrome.find_elements(By.TAG_NAME, "li")] == [JOHN_GOOGLE, "Team"]
            assert "Go back to Slack." in chrome.find_element(By.TAG_NAME, "main").text
            assert chrome.get_cookies() == []
            return str(chrome.current_url)

        landed = await in_browser(consent)
        assert landed.startswith(f"{google_site.public_url}/oauth/google/callback?code=")
        (connection,) = await google_site.connections(user_id)
        assert connection["account"] == JOHN_GOOGLE

        def come_back() -> None:
            chrome.refresh()  # the callback again: its state is spent
            assert status(chrome) == 400 and heading(chrome) == "Google Calendar was not connected"
            assert chrome.title == "Error: Google Calendar was not connected"
            (alert,) = chrome.find_elements(By.CSS_SELECTOR, "[role=alert]")
            assert "already used" in alert.text and "/croco connect" in chrome.find_element(By.TAG_NAME, "main").text

        await in_browser(come_back)
        assert len(await google_site.connections(user_id)) == 1
