"""Make docs/management-page.png: the queues view with a few busy queues and one message got.

    python tests/management/screenshot.py                       # against RabbitMQ, through the proxy
    python tests/management/screenshot.py --page http://127.0.0.1:15673 --amqp-port 5673

The queues it declares (shop.*) are deleted again before it exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pika
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from page_proxy import PageProxy

ROOT = Path(__file__).resolve().parents[2]
QUEUES = {"shop.orders": 40, "shop.emails": 7, "shop.orders.dead-letter": 2}
ARGUMENTS = {"shop.orders": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "shop.orders.dead-letter"}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the management page's queues view.")
    parser.add_argument("--page", help="URL of a server that serves the page and its API itself "
                                       "(default: RabbitMQ on 15672 through tests/management/page_proxy.py)")
    parser.add_argument("--amqp-port", type=int, default=5672, help="AMQP port of that broker (default: 5672)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "management-page.png"),
                        help="PNG to write (default: docs/management-page.png)")
    args = parser.parse_args(argv)

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", args.amqp_port))
    channel = connection.channel()
    channel.confirm_delivery()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
                     "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    proxy = None if args.page else PageProxy("http://127.0.0.1:15672").__enter__()
    try:
        for name, count in QUEUES.items():
            channel.queue_declare(name, durable=name != "shop.emails", arguments=ARGUMENTS.get(name))
            for i in range(count):
                channel.basic_publish("", name, b'{"order": %d, "total": "19.90"}' % (1000 + i))
        # A consumer slower than the publisher: both rates and a growing backlog show.
        pending = []
        channel.basic_qos(prefetch_count=5)
        channel.basic_consume("shop.orders", lambda _ch, method, _props, _body: pending.append(method.delivery_tag))

        driver.get((args.page or proxy.url) + "/#queues")
        driver.find_element(By.ID, "login-user").send_keys("guest")
        driver.find_element(By.ID, "login-password").send_keys("guest")
        driver.find_element(By.ID, "login-submit").click()
        driver.find_element(By.CSS_SELECTOR, "#view-queues .filter").send_keys("shop.")
        # Keep publishing so the rate columns show something, until the stats have caught up.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for _ in range(2):
                channel.basic_publish("", "shop.orders", b'{"order": 2000, "total": "5.00"}')
            if pending:
                channel.basic_ack(pending.pop(0))
            connection.process_data_events(time_limit=0.25)
            rates = driver.execute_script(
                "return [...document.querySelectorAll('#queues td.publish-rate')].map(c => c.textContent)")
            if len(rates) == len(QUEUES) and any(rate != "0.0/s" for rate in rates):
                break
        driver.execute_script(
            "document.querySelector('#queues tr[data-name=\"shop.orders.dead-letter\"] button.get').click()")
        deadline = time.monotonic() + 10
        while not driver.execute_script("return document.querySelector('#queues tr.got pre')"):
            assert time.monotonic() < deadline, "the Get answer did not show"
            time.sleep(0.05)
        # The picture is as tall as the page, no more: a small PNG for the README.
        height = driver.execute_script("return document.querySelector('main').getBoundingClientRect().bottom")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1200, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
        driver.save_screenshot(args.output)
    finally:
        for name in QUEUES:
            channel.queue_delete(name)
        connection.close()
        driver.quit()
        if proxy:
            proxy.__exit__(None, None, None)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
