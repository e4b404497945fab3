"""The management web page, in headless Chromium driven by Selenium, against a real management API.

The page talks to whatever serves it (relative ``api/...`` URLs), so the same scenarios run against
RabbitMQ's management API (through tests/management/page_proxy.py, which serves our static files)
and against our broker's own. ``TARGET`` below says which; the AMQP side is always checked with pika.

Locally, a missing Chromium, Selenium or RabbitMQ skips these tests; under CI (CI=true), where
.ci/run installs them, it fails them instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid

import pika
import pytest

from amqp_broker.testing import BrokerThread
from page_proxy import PageProxy

# Stats in RabbitMQ's management API trail the broker by up to two 5 s collection rounds, and the
# page refreshes every 5 s on top of that.
SHOWS_UP = 30.0


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


@dataclasses.dataclass(frozen=True)
class ManagementTarget:
    """Where the page is served (its API under ``url + "/api/"``) and the broker behind it."""

    url: str
    user: str
    password: str
    amqp_port: int


RABBITMQ_MANAGEMENT = "http://127.0.0.1:15672"


@contextlib.contextmanager
def rabbitmq_through_proxy():
    """The live RabbitMQ's management API, with our page in front of it."""
    try:
        urllib.request.urlopen(RABBITMQ_MANAGEMENT + "/api/overview", timeout=5)
    except urllib.error.HTTPError:
        pass  # 401: it answers
    except OSError as exc:
        unavailable(f"RabbitMQ's management API is not reachable on {RABBITMQ_MANAGEMENT}: {exc}")
    with PageProxy(RABBITMQ_MANAGEMENT) as proxy:
        yield ManagementTarget(proxy.url, "guest", "guest", 5672)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def our_broker():
    """Our broker, serving the page and the API itself on its management port."""
    port = free_port()
    with BrokerThread(management_port=port) as broker:
        yield ManagementTarget(f"http://127.0.0.1:{port}", "guest", "guest", broker.port)


# Which management API the page is driven against: `our_broker` once it serves one.
TARGET = rabbitmq_through_proxy


@pytest.fixture(scope="module")
def management_url():
    with TARGET() as target:
        yield target


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        unavailable("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800"):
        options.add_argument(argument)
    # A driver path of our own keeps Selenium from looking for (and downloading) one.
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


class Page:
    """The page in the browser, read through the DOM the way a user reads it."""

    def __init__(self, driver, target: ManagementTarget):
        self.driver = driver
        self.target = target

    def open(self):
        self.driver.get(self.target.url + "/")

    def log_in(self, user, password):
        from selenium.webdriver.common.by import By

        self.wait(lambda: self.driver.find_element(By.ID, "login").is_displayed(), "the login form")
        for field, value in (("login-user", user), ("login-password", password)):
            element = self.driver.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        self.driver.find_element(By.ID, "login-submit").click()

    def logged_in(self):
        return self.js("return !document.querySelector('#tabs').hidden")

    def show(self, view, filter_text=None):
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, f'#tabs a[href="#{view}"]').click()
        self.wait(lambda: self.js(f"return !document.querySelector('#view-{view}').hidden"), f"the {view} view")
        if filter_text is not None:
            box = self.driver.find_element(By.CSS_SELECTOR, f"#view-{view} .filter")
            box.clear()
            box.send_keys(filter_text)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def text(self, selector):
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null", selector)

    def cell(self, table, name, column, vhost="/"):
        """The text of ``column`` (a cell class) in ``table``'s row for ``name``, or None."""
        return self.js(
            """const row = [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]
                   .find(r => r.dataset.name === arguments[1] && r.dataset.vhost === arguments[3]);
               const cell = row && row.querySelector('td.' + arguments[2]);
               return cell ? cell.textContent : null""",
            table, name, column, vhost)

    def click(self, table, name, button, vhost="/"):
        """Click ``button`` (a class) in ``table``'s row for ``name``, the way a user would."""
        from selenium.common.exceptions import StaleElementReferenceException

        find = """return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)]
                      .find(r => r.dataset.name === arguments[1] && r.dataset.vhost === arguments[3])
                      ?.querySelector('button.' + arguments[2]) ?? null"""
        # The table is redrawn by every refresh: a button found just before one is stale.
        for _ in range(5):
            element = self.wait(lambda: self.js(find, table, name, button, vhost), f"the {button} button of {name}")
            try:
                element.click()
                return
            except StaleElementReferenceException:
                continue
        pytest.fail(f"the {button} button of {name} kept being redrawn")

    def wait(self, predicate, what, timeout=10.0):
        """``predicate()``'s first truthy value, polled (the page is external state); fails at the
        deadline naming ``what`` and the page's status line."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; page status: {self.text('#status')!r}, "
                            f"notice: {self.text('#notice')!r}")
            time.sleep(0.05)


@pytest.fixture
def page(browser, management_url):
    page = Page(browser, management_url)
    page.open()
    page.wait(lambda: page.logged_in() or page.text("#login-user") is not None, "the page to load")
    if not page.logged_in():
        page.log_in(management_url.user, management_url.password)
        page.wait(page.logged_in, "the login to succeed")
    return page


@pytest.fixture
def amqp(management_url):
    """A pika channel on the broker behind the page; what the test declares goes on teardown."""
    tag = uuid.uuid4().hex[:8]
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", management_url.amqp_port, heartbeat=0,
        client_properties={"connection_name": f"web-page-test-{tag}"}))
    channel = connection.channel()
    channel.confirm_delivery()
    made = {"queues": [], "exchanges": []}

    class Amqp:
        def __init__(self):
            self.connection, self.channel, self.tag = connection, channel, tag

        def queue(self, name):
            name = f"web-page.{name}.{tag}"
            channel.queue_declare(name)
            made["queues"].append(name)
            return name

        def exchange(self, name, kind):
            name = f"web-page.{name}.{tag}"
            channel.exchange_declare(name, kind)
            made["exchanges"].append(name)
            return name

        def ready(self, queue):
            return channel.queue_declare(queue, passive=True).method.message_count

    yield Amqp()
    for queue in made["queues"]:
        channel.queue_delete(queue)
    for exchange in made["exchanges"]:
        channel.exchange_delete(exchange)
    connection.close()


def test_a_wrong_password_is_refused(browser, management_url):
    page = Page(browser, management_url)
    page.open()
    page.js("sessionStorage.clear()")
    page.open()
    page.log_in(management_url.user, "not-" + management_url.password)
    error = page.wait(lambda: page.text("#login-error"), "the login error")
    assert error == "Login failed: wrong user or password."
    assert not page.logged_in()
    assert page.js("return sessionStorage.length") == 0


def test_a_queue_shows_its_messages_and_purge_empties_it(page, amqp):
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    queue = amqp.queue("purge")
    for i in range(3):
        amqp.channel.basic_publish("", queue, f"message {i}".encode())
    page.show("queues", filter_text=queue)
    page.wait(lambda: page.cell("queues", queue, "total") == "3", f"{queue} to show 3 messages", SHOWS_UP)
    assert page.cell("queues", queue, "ready") == "3"
    assert page.cell("queues", queue, "unacked") == "0"

    page.click("queues", queue, "get")
    payload = page.wait(lambda: page.text("#queues tr.got pre.payload"), "the message from Get")
    assert payload == "message 0"
    # Get requeues: the queue still holds all three.
    page.wait(lambda: amqp.ready(queue) == 3, "the got message to be requeued")

    page.click("queues", queue, "purge")
    alert = WebDriverWait(page.driver, 5).until(expected_conditions.alert_is_present())
    assert queue in alert.text
    alert.accept()
    assert page.wait(lambda: page.text("#notice"), "the purge notice") == f"Purged queue {queue}."
    assert amqp.ready(queue) == 0
    page.wait(lambda: page.cell("queues", queue, "total") == "0", f"{queue} to show 0 messages", SHOWS_UP)
    assert page.text("#queues tr.got") is None


def test_the_publish_form_delivers_to_a_queue(page, amqp):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    queue = amqp.queue("publish")
    payload = f"from the page: {amqp.tag} ✓"
    page.show("publish")
    driver = page.driver
    vhosts = page.wait(lambda: Select(driver.find_element(By.ID, "publish-vhost")).options, "the vhost list")
    assert "/" in [option.get_attribute("value") for option in vhosts]
    Select(driver.find_element(By.ID, "publish-vhost")).select_by_value("/")
    Select(driver.find_element(By.ID, "publish-exchange")).select_by_visible_text("(AMQP default)")
    driver.find_element(By.ID, "publish-key").send_keys(queue)
    driver.find_element(By.ID, "publish-payload").send_keys(payload)
    driver.find_element(By.ID, "publish-submit").click()
    result = page.wait(lambda: (page.text("#publish-result") or "").removesuffix("Publishing…"),
                       "the publish result")
    assert result == "Published to (AMQP default) and routed."

    method, _properties, body = amqp.channel.basic_get(queue, auto_ack=True)
    assert method is not None, "the published message did not arrive"
    assert body.decode() == payload

    # Nothing bound for that key: the page says so rather than claiming success.
    driver.find_element(By.ID, "publish-key").clear()
    driver.find_element(By.ID, "publish-key").send_keys(f"nowhere.{amqp.tag}")
    driver.find_element(By.ID, "publish-submit").click()
    page.wait(lambda: "not routed" in (page.text("#publish-result") or ""), "the not-routed result")

    # A queue's Publish button opens the form aimed at that queue.
    page.show("queues", filter_text=queue)
    page.click("queues", queue, "publish")
    page.wait(lambda: driver.find_element(By.ID, "publish-key").get_attribute("value") == queue,
              "the form aimed at the queue")
    assert Select(driver.find_element(By.ID, "publish-exchange")).first_selected_option.text == "(AMQP default)"
    driver.find_element(By.ID, "publish-payload").clear()
    driver.find_element(By.ID, "publish-payload").send_keys("second")
    driver.find_element(By.ID, "publish-submit").click()
    page.wait(lambda: page.text("#publish-result") == "Published to (AMQP default) and routed.", "the second publish")
    method, _properties, body = amqp.channel.basic_get(queue, auto_ack=True)
    assert (method is not None, body) == (True, b"second")


def test_the_lists_show_what_a_client_made(page, amqp):
    queue = amqp.queue("bound")
    exchange = amqp.exchange("topic", "topic")
    amqp.channel.queue_bind(queue, exchange, f"orders.{amqp.tag}.#")
    connection_label = f"web-page-test-{amqp.tag}"

    page.show("exchanges", filter_text=exchange)
    page.wait(lambda: page.js(
        "return [...document.querySelectorAll('#exchanges tbody tr')].some(r => r.dataset.name === arguments[0]"
        " && r.cells[2].textContent === 'topic')", exchange), f"{exchange} in the exchanges")

    page.show("bindings", filter_text=queue)
    page.wait(lambda: page.js(
        "return [...document.querySelectorAll('#bindings tbody tr')].some(r => r.cells[1].textContent === arguments[0]"
        " && r.cells[2].textContent === arguments[1] && r.cells[3].textContent === arguments[2])",
        exchange, queue, f"orders.{amqp.tag}.#"), f"the binding of {queue} to {exchange}")

    page.show("connections")
    connection_name = page.wait(lambda: page.js(
        "const row = [...document.querySelectorAll('#connections tbody tr')].find(r =>"
        " r.querySelector('td.name .muted')?.textContent === arguments[0]); return row ? row.dataset.name : null",
        connection_label), f"the connection named {connection_label}", SHOWS_UP)

    page.show("channels", filter_text=connection_name)
    page.wait(lambda: page.js(
        "return [...document.querySelectorAll('#channels tbody tr')].some(r => r.dataset.name === arguments[0])",
        f"{connection_name} (1)"), f"channel 1 of {connection_name}", SHOWS_UP)

    page.show("overview")
    page.wait(lambda: page.text("#total-connections"), "the totals")
    assert int(page.text("#total-queues").replace(",", "")) >= 1
    assert int(page.text("#total-connections").replace(",", "")) >= 1
    assert page.text("#rate-publish").endswith("/s")


def test_the_credentials_last_for_the_browser_session(page):
    page.open()
    page.wait(page.logged_in, "the page to log in from sessionStorage")
    assert page.text("#who") == page.target.user
    from selenium.webdriver.common.by import By

    page.driver.find_element(By.ID, "logout").click()
    assert page.js("return sessionStorage.length") == 0
    page.open()
    page.wait(lambda: page.js("return !document.querySelector('#login').hidden"), "the login form after log-out")
