"""The pytest plugin (amqp_broker.pytest_plugin), run as a user's suite would run it: sample test
files under pytester, real pika connections to the broker the plugin starts.

Inner runs turn plugin autoloading off and load the plugin with ``-p``, so they behave the same
whether or not this checkout is installed with its entry point; the entry point itself is checked
by a run that finds it through package metadata."""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path

import pytest

import amqp_broker

pytest_plugins = ["pytester"]

PLUGIN = "amqp_broker.pytest_plugin"
REPO = Path(amqp_broker.__file__).resolve().parents[1]


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs load only the plugins they name."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return pytester


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


SAMPLE = '''
import pika
import pytest

from amqp_broker.broker.admin import AdminError


def connect(url):
    return pika.BlockingConnection(pika.URLParameters(url))


def test_publish_and_consume(amqp_url, amqp_vhost):
    conn = connect(amqp_url)
    ch = conn.channel()
    ch.queue_declare("work")
    for n in range(3):
        ch.basic_publish("", "work", f"m{n}".encode())
    assert amqp_vhost.wait_for_messages("work", 3) == 3
    assert amqp_vhost.queues() == {"work": 3}
    bodies = []
    for method, _props, body in ch.consume("work", inactivity_timeout=5):
        bodies.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(bodies) == 3:
            break
    ch.cancel()
    assert bodies == [b"m0", b"m1", b"m2"]
    assert amqp_vhost.wait_for_messages("work", 0) == 0
    conn.close()


def test_purge_all_and_broker_helpers(amqp_broker, amqp_vhost):
    conn = connect(amqp_vhost.url)
    ch = conn.channel()
    ch.queue_declare("a")
    ch.queue_declare("b")
    ch.basic_publish("", "a", b"x")
    ch.basic_publish("", "b", b"y")
    ch.basic_publish("", "b", b"z")
    amqp_broker.wait_for_messages("b", 2, vhost=amqp_vhost.name)
    assert amqp_broker.queues(amqp_vhost.name) == {"a": 1, "b": 2}
    assert amqp_vhost.purge_all() == 3
    assert amqp_vhost.queues() == {"a": 0, "b": 0}
    assert ch.basic_get("b")[0] is None
    conn.close()


def test_wait_for_messages_reports_the_count(amqp_url, amqp_vhost):
    conn = connect(amqp_url)
    ch = conn.channel()
    ch.queue_declare("short")
    ch.basic_publish("", "short", b"only one")
    amqp_vhost.wait_for_messages("short", 1)
    with pytest.raises(AssertionError, match="'short' .* has 1 after 0.05 s; expected 2"):
        amqp_vhost.wait_for_messages("short", 2, timeout=0.05)
    with pytest.raises(AssertionError, match="'nowhere' .* does not exist"):
        amqp_vhost.wait_for_messages("nowhere", 1, timeout=0.05)
    conn.close()


def test_default_vhost_url_and_admin(amqp_broker):
    assert amqp_broker.url == f"amqp://guest:guest@127.0.0.1:{amqp_broker.port}/%2F"
    assert (amqp_broker.host, amqp_broker.port) == ("127.0.0.1", pika.URLParameters(amqp_broker.url).port)
    conn = connect(amqp_broker.url)
    conn.channel().queue_declare("plugin.default", durable=False)
    assert amqp_broker.admin.queue("/", "plugin.default")["durable"] is False
    with pytest.raises(AdminError, match="queue 'absent' in vhost '/' not found"):
        amqp_broker.admin.purge_queue("/", "absent")
    with pytest.raises(AttributeError):
        amqp_broker.admin.broker  # state stays on the broker's loop; only calls cross over
    amqp_broker.admin.delete_queue("/", "plugin.default")
    conn.close()
'''


def test_fixtures_with_pika(pytester):
    pytester.makepyfile(test_sample=SAMPLE)
    result = pytester.runpytest("-p", PLUGIN)
    result.assert_outcomes(passed=4)


def test_each_test_gets_a_vhost_of_its_own(pytester):
    pytester.makepyfile(test_isolation='''
        import pika
        import pytest

        seen = {}

        def test_first(amqp_url, amqp_vhost):
            seen["first"] = amqp_vhost.name
            conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
            ch = conn.channel()
            ch.queue_declare("shared", durable=True)
            ch.exchange_declare("events", "topic")
            ch.basic_publish("", "shared", b"left behind")
            seen["conn"] = conn  # left open: deleting the vhost after the test closes it

        def test_second(amqp_url, amqp_vhost, amqp_broker):
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker, match="320"):
                seen["conn"].channel()  # meets the broker's connection.close instead of open-ok
            assert amqp_vhost.name != seen["first"]
            assert amqp_vhost.queues() == {}
            vhosts = {v["name"] for v in amqp_broker.admin.vhosts()}
            assert vhosts == {"/", amqp_vhost.name}  # the first test's vhost is gone
            assert amqp_broker.admin.connections() == []
            conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
            ch = conn.channel()
            ok = ch.queue_declare("shared", durable=False)  # no inequivalence with the first one
            assert ok.method.message_count == 0
            conn.close()
    ''')
    result = pytester.runpytest("-p", PLUGIN)
    result.assert_outcomes(passed=2)


def test_amqp_broker_clean_resets_the_broker(pytester):
    pytester.makepyfile(test_clean='''
        import pika
        import pytest

        conns = []

        def test_dirty(amqp_broker):
            conn = pika.BlockingConnection(pika.URLParameters(amqp_broker.url))
            conn.channel().queue_declare("leftover")
            amqp_broker.admin.add_vhost("extra")
            conns.append(conn)

        @pytest.mark.usefixtures("amqp_broker_clean")
        def test_clean(amqp_broker):
            assert amqp_broker.queues() == {}
            assert [v["name"] for v in amqp_broker.admin.vhosts()] == ["/"]
            assert amqp_broker.admin.connections() == []
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker, match="320"):
                conns[0].channel()  # meets the broker's connection.close instead of open-ok
    ''')
    result = pytester.runpytest("-p", PLUGIN)
    result.assert_outcomes(passed=2)


def test_port_and_data_dir_options(pytester):
    port = free_ports(1)
    data_dir = pytester.path / "broker-data"
    pytester.makeini(f"[pytest]\namqp_broker_port = {port}\n")
    pytester.makepyfile(test_options=f'''
        import pika

        def test_options(amqp_broker):
            assert amqp_broker.port == {port}
            conn = pika.BlockingConnection(pika.URLParameters(amqp_broker.url))
            conn.channel().queue_declare("kept", durable=True)
            conn.close()
            assert amqp_broker.admin.node_info()["data_dir"] == {str(data_dir)!r}
    ''')
    result = pytester.runpytest("-p", PLUGIN, f"--amqp-broker-data-dir={data_dir}")
    result.assert_outcomes(passed=1)
    assert any(data_dir.iterdir()), "the given data directory is kept"

    # The same data directory on the next run: the durable queue is still there.
    pytester.makepyfile(test_options='''
        def test_kept(amqp_broker):
            assert amqp_broker.queues() == {"kept": 0}
    ''')
    result = pytester.runpytest("-p", PLUGIN, f"--amqp-broker-data-dir={data_dir}", "--amqp-broker-port=0")
    result.assert_outcomes(passed=1)


def test_a_broker_that_cannot_start_says_why_in_one_line(pytester):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pytester.makepyfile(test_busy='''
            def test_one(amqp_url):
                pass

            def test_two(amqp_url):
                pass
        ''')
        result = pytester.runpytest("-p", PLUGIN, f"--amqp-broker-port={port}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [f"*amqp_broker: the test broker did not start on 127.0.0.1:{port}: *Address already in use*"])
    assert "Traceback" not in result.stdout.str()


def test_entry_point_loads_the_plugin_and_it_stays_inert(pytester, monkeypatch):
    # The entry point as pyproject.toml declares it, found the way pytest finds it: in package
    # metadata on sys.path.
    with open(REPO / "pyproject.toml", "rb") as f:
        entry_points = tomllib.load(f)["project"]["entry-points"]["pytest11"]
    site = pytester.mkdir("site")
    dist = site / "amqp_broker_plugin_check-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: amqp-broker-plugin-check\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {value}\n" for name, value in entry_points.items()))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ["PYTHONPATH"]]))
    pytester.makepyfile(test_unused='''
        import os
        import sys
        import threading

        def test_plugin_loaded_but_nothing_started(request):
            plugin = request.config.pluginmanager.get_plugin("amqp_broker")
            assert plugin is not None and plugin.__name__ == "amqp_broker.pytest_plugin"
            assert request.config.getoption("amqp_broker_port") is None  # its options exist
            assert "trio" not in sys.modules
            assert "amqp_broker.testing" not in sys.modules
            assert [t.name for t in threading.enumerate()] == ["MainThread"]
            fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                   if os.path.exists(f"/proc/self/fd/{fd}")]
            assert not [fd for fd in fds if fd.startswith("socket:")]
    ''')
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:pytest_rabbitmq")
    result.assert_outcomes(passed=1)


def test_xdist_workers_get_a_broker_each(pytester):
    port = free_ports(2)
    data_dir = pytester.path / "data"
    out = pytester.mkdir("out")
    pytester.makepyfile(test_workers=f'''
        import os
        import pika

        def test_worker(amqp_broker, amqp_url):
            conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
            conn.channel().queue_declare("q")
            conn.close()
            worker = os.environ["PYTEST_XDIST_WORKER"]
            info = amqp_broker.admin.node_info()
            with open(os.path.join({str(out)!r}, worker), "w") as f:
                f.write(f"{{amqp_broker.port}} {{info['data_dir']}} {{info['pid']}}")
    ''')
    result = pytester.runpytest_subprocess(
        "-p", "xdist", "-p", PLUGIN, "-n", "2", "--dist", "each",
        f"--amqp-broker-port={port}", f"--amqp-broker-data-dir={data_dir}")
    result.assert_outcomes(passed=2)
    seen = {path.name: path.read_text().split() for path in out.iterdir()}
    assert sorted(seen) == ["gw0", "gw1"]
    assert seen["gw0"][:2] == [str(port), str(data_dir / "gw0")]
    assert seen["gw1"][:2] == [str(port + 1), str(data_dir / "gw1")]
    assert seen["gw0"][2] != seen["gw1"][2]  # a broker in each worker's process
