"""The brokers under test: ours as a subprocess, RabbitMQ (running, or a throw-away node), start-up probe."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import procstat
from .perf import wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data[data.rindex(")") + 2] != "Z"
    except OSError:
        return False


def stop_pids(proc: subprocess.Popen, extra: list[int], timeout: float = 60.0) -> tuple[float, bool]:
    """SIGTERM to proc (and the extra pids, e.g. the listener a wrapper script started), SIGKILL after
    timeout; (seconds taken, killed)"""
    t0 = time.monotonic()
    pids = [proc.pid] + [p for p in extra if p and p != proc.pid]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    killed = False
    while time.monotonic() - t0 < timeout:
        proc.poll()
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.05)
    else:
        for p in pids:
            if _alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                    killed = True
                except ProcessLookupError:
                    pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    return time.monotonic() - t0, killed


@dataclass
class Broker:
    name: str
    host: str
    port: int
    pid: int | None = None
    proc: subprocess.Popen | None = None
    log_path: str | None = None
    restarts: int = 0
    notes: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return port_open(self.host, self.port)


def ours_command(port: int, data_dir: str, log_level: str = "warning") -> list[str]:
    return [sys.executable, "-m", "amqp_broker", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", log_level, "--data-dir", data_dir,
            "--management-port", "0", "--prometheus-port", "0"]


class Ours:
    """our broker in a subprocess on a free port, its output in a log file"""

    def __init__(self, port: int | None = None, workdir: str | None = None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="bench-ours-")
        self.port = port or free_port()
        self.broker = Broker("ours", "127.0.0.1", self.port)
        self.logs: list[str] = []

    def start(self) -> Broker:
        log = os.path.join(self.workdir, f"broker-{len(self.logs)}.log")
        self.logs.append(log)
        data = os.path.join(self.workdir, "data")
        os.makedirs(data, exist_ok=True)
        f = open(log, "wb")
        proc = subprocess.Popen(ours_command(self.port, data), stdout=f, stderr=subprocess.STDOUT,
                                cwd=ROOT, stdin=subprocess.DEVNULL)
        f.close()
        if wait_ready("127.0.0.1", self.port, 60) is None:
            stop_pids(proc, [], 10)
            raise RuntimeError(f"our broker did not come up on port {self.port}; see {log}")
        self.broker.proc, self.broker.pid, self.broker.log_path = proc, proc.pid, log
        return self.broker

    def ensure(self) -> Broker:
        """restart after a crash (counted)"""
        if self.broker.proc is None or self.broker.proc.poll() is not None:
            if self.broker.proc is not None:
                self.broker.restarts += 1
                self.broker.notes.append(f"broker exited with {self.broker.proc.returncode}; restarted")
            self.start()
        return self.broker

    def stop(self) -> None:
        """stop it; its data directory goes, its logs stay for inspection"""
        if self.broker.proc is not None and self.broker.proc.poll() is None:
            stop_pids(self.broker.proc, [], 30)
        shutil.rmtree(os.path.join(self.workdir, "data"), ignore_errors=True)

    def log_problems(self, limit: int = 20) -> dict:
        """ERROR/WARNING/Traceback lines of its logs"""
        counts = {"error": 0, "warning": 0, "traceback": 0}
        lines = []
        for path in self.logs:
            try:
                with open(path, errors="replace") as f:
                    for line in f:
                        low = line.lower()
                        kind = ("traceback" if "traceback" in low else
                                "error" if "error" in low or "critical" in low or "exception" in low else
                                "warning" if "warn" in low else None)
                        if kind:
                            counts[kind] += 1
                            if len(lines) < limit:
                                lines.append(line.rstrip()[:300])
            except OSError:
                pass
        return {"counts": counts, "first_lines": lines, "logs": self.logs}


def rabbit_script() -> str | None:
    exe = shutil.which("rabbitmq-server")
    if not exe:
        return None
    real = os.path.join(os.path.dirname(os.path.realpath(exe)), "rabbitmq-server")
    return real if os.path.exists(real) else exe


class RabbitTwin:
    """a throw-away RabbitMQ node (own node name, ports, data in a temp dir; shares epmd)"""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-rabbit-")
        self.proc: subprocess.Popen | None = None

    def command_env(self) -> tuple[list[str], dict]:
        script = rabbit_script()
        if not script:
            raise RuntimeError("rabbitmq-server not installed")
        d = self.dir
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = {self.port}\nloopback_users = none\n")
        with open(os.path.join(d, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        open(os.path.join(d, "rabbitmq-env.conf"), "w").close()
        dist = free_port()
        env = dict(os.environ, HOME=d, RABBITMQ_NODENAME=f"bench{self.port}@localhost",
                   RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(dist),
                   RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"), RABBITMQ_LOG_BASE=os.path.join(d, "log"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "enabled_plugins"),
                   RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq"),
                   RABBITMQ_CONF_ENV_FILE=os.path.join(d, "rabbitmq-env.conf"),
                   RABBITMQ_PID_FILE=os.path.join(d, "pid"))
        return [script], env

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def find_rabbit(spec: str | None, allow_start: bool = True) -> tuple[Broker | None, RabbitTwin | None, str]:
    """--rabbit HOST:PORT, else 127.0.0.1:5672 when it answers AMQP, else a throw-away node when
    rabbitmq-server is installed; (broker, twin to stop later, how it was found)"""
    if spec:
        host, _, port = spec.rpartition(":")
        host = host or "127.0.0.1"
        b = Broker("rabbitmq", host, int(port))
        if wait_ready(host, int(port), 10) is None:
            raise RuntimeError(f"RabbitMQ at {spec} does not answer an AMQP handshake")
        if host in ("127.0.0.1", "localhost", "::1"):
            b.pid = procstat.listener_pid(int(port))
        return b, None, f"given {spec}"
    if port_open("127.0.0.1", 5672) and wait_ready("127.0.0.1", 5672, 5) is not None:
        b = Broker("rabbitmq", "127.0.0.1", 5672, pid=procstat.listener_pid(5672))
        return b, None, "running on 127.0.0.1:5672"
    if allow_start and rabbit_script():
        twin = RabbitTwin()
        cmd, env = twin.command_env()
        log = open(os.path.join(twin.dir, "stdout.log"), "wb")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        twin.proc = proc
        if wait_ready("127.0.0.1", twin.port, 120) is None:
            stop_pids(proc, [], 30)
            twin.cleanup()
            raise RuntimeError("started rabbitmq-server but it did not answer within 120 s")
        b = Broker("rabbitmq", "127.0.0.1", twin.port, pid=procstat.listener_pid(twin.port), proc=proc)
        return b, twin, f"throw-away node started on 127.0.0.1:{twin.port}"
    return None, None, "not found (no rabbitmq-server, nothing on 127.0.0.1:5672)"


def stop_twin(b: Broker, twin: RabbitTwin) -> None:
    if twin.proc is not None:
        stop_pids(twin.proc, [b.pid] if b.pid else [], 60)
    twin.cleanup()


def measure_startup(cmd: list[str], env: dict | None, port: int, settle: float = 2.0,
                    timeout: float = 120.0, cwd: str | None = None) -> dict:
    """exec -> first full AMQP handshake (connection + channel.open) time, idle RSS after settle s,
    then stop by pid"""
    res: dict = {"tool": "interop.bench", "mode": "startup", "command": " ".join(cmd), "port": port}
    if port_open("127.0.0.1", port, 0.2):
        res.update(ready=False, error_messages=[f"port {port} already in use"], exit_code=1)
        return res
    logf = tempfile.TemporaryFile()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=cwd)
    waited = wait_ready("127.0.0.1", port, timeout)
    t1 = time.monotonic()
    lpid = None
    if waited is not None:
        time.sleep(settle)
        lpid = procstat.listener_pid(port)
        res["listener_rss_kb"] = procstat.rss_kb(lpid)
        res["tree_rss_kb"] = procstat.tree_rss_kb(proc.pid)
    stop_s, killed = stop_pids(proc, [lpid] if lpid else [], 60)
    res.update(ready=waited is not None, startup_s=round(t1 - t0, 3) if waited is not None else None,
               stop_s=round(stop_s, 3), killed=killed, exit_status=proc.returncode,
               exit_code=0 if waited is not None else 1)
    logf.close()
    return res


GARAGEMQ_CONFIG = "/etc/garagemq/config.yaml"


class GarageMQ:
    """a throw-away garagemq (Go, Debian package `garagemq`) on a free port: the package's example
    config with TCP_NODELAY on (as RabbitMQ and we set it; the package leaves Nagle on) and its db in
    a temp dir. It has no flow control, so the generator's backlog cap (auto) must stay on."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-garagemq-")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("garagemq")) and os.path.exists(GARAGEMQ_CONFIG)

    def config(self) -> str:
        with open(GARAGEMQ_CONFIG) as f:
            text = f.read()
        admin = free_port()
        text = (text.replace("port: 5672", f"port: {self.port}").replace("port: 15672", f"port: {admin}")
                .replace("nodelay: false", "nodelay: true")
                .replace("defaultPath: /var/lib/garagemq/db", f"defaultPath: {self.dir}/db"))
        path = os.path.join(self.dir, "config.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self) -> Broker:
        log = open(os.path.join(self.dir, "garagemq.log"), "wb")
        self.proc = subprocess.Popen(["garagemq", "--config", self.config(), "--log-level", "warning"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        if wait_ready("127.0.0.1", self.port, 30) is None:
            self.stop()
            raise RuntimeError(f"garagemq did not answer on port {self.port}")
        return Broker("garagemq", "127.0.0.1", self.port, pid=self.proc.pid, proc=self.proc)

    def version(self) -> str:
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "garagemq"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        return out or "unknown version"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_pids(self.proc, [], 30)
        shutil.rmtree(self.dir, ignore_errors=True)


def find_garagemq(spec: str | None) -> tuple[Broker | None, GarageMQ | None, str]:
    """--garagemq HOST:PORT uses a running one; 'auto' starts a throw-away one when installed;
    'off' skips it; (broker, instance to stop later, how it was found)"""
    if spec == "off":
        return None, None, "disabled (--garagemq off)"
    if spec and spec != "auto":
        host, _, port = spec.rpartition(":")
        host = host or "127.0.0.1"
        if wait_ready(host, int(port), 10) is None:
            raise RuntimeError(f"garagemq at {spec} does not answer an AMQP handshake")
        b = Broker("garagemq", host, int(port))
        if host in ("127.0.0.1", "localhost", "::1"):
            b.pid = procstat.listener_pid(int(port))
        return b, None, f"given {spec}"
    if not GarageMQ.available():
        return None, None, "not installed (apt-get install garagemq)"
    g = GarageMQ()
    b = g.start()
    return b, g, f"garagemq {g.version()} started on 127.0.0.1:{g.port}"
