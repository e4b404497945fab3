"""The package builds into a wheel that installs into a fresh virtual environment, whose
``amqp-broker`` command runs the broker.

Offline: the wheel is built without build isolation (setuptools from this environment, see the
test extra), and installed without its dependencies, which the fresh environment borrows from
this one through a .pth file; the wheel's metadata is checked to ask for exactly those.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pika
import pytest

from amqp_broker import DISTRIBUTION, __version__

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the fresh venv it is installed in)."""
    root = tmp_path_factory.mktemp("packaging")
    # Built from a copy, so the build leaves nothing (build/, *.egg-info) in the working tree.
    source = root / "src"
    # Without a compiled build's extension modules (*.so): the plain build makes none.
    shutil.copytree(REPO_ROOT / "amqp_broker", source / "amqp_broker",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copytree(REPO_ROOT / "_build", source / "_build", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "setup.py"):
        shutil.copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(root / "dist"), str(source)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return wheel, venv


def run_env(tmp_path: Path) -> dict[str, str]:
    """The fresh environment on its own: nothing from the working tree on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_BROKER_", "RABBITMQ_"))}
    env.pop("PYTHONPATH", None)
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    return env


def test_wheel_metadata(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    assert wheel.name == f"{DISTRIBUTION.replace('-', '_')}-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"{DISTRIBUTION.replace('-', '_')}-{__version__}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert all(n.startswith(("amqp_broker/", dist_info + "/")) for n in names), names
    assert "amqp_broker/__main__.py" in names and "amqp_broker/server/discovery.py" in names
    assert f"Name: {DISTRIBUTION}\n" in metadata and f"Version: {__version__}\n" in metadata
    runtime = sorted(re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)[^;\n]*$", metadata, re.MULTILINE))
    assert runtime == ["h11", "pamqp", "trio"]  # the test clients are in the test extra only
    assert "amqp-broker = amqp_broker.__main__:main" in entry_points


def test_installed_command_prints_its_version(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    result = subprocess.run(
        [str(venv / "bin" / "amqp-broker"), "--version"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=run_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"amqp-broker ({DISTRIBUTION}) {__version__}\n"
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import amqp_broker; print(amqp_broker.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=run_env(tmp_path), check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(venv)), where.stdout  # the installed copy, not the tree's


def test_installed_command_runs_the_broker(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "broker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(venv / "bin" / "amqp-broker"), "--host", "127.0.0.1", "--port", str(port),
             "--management-port", "0", "--prometheus-port", "0", "--data-dir", str(tmp_path / "data")],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=run_env(tmp_path),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "Server startup complete" not in log_path.read_text():
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)  # polling a log file: external state
            conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
            assert conn.channel().is_open
            conn.close()
            proc.terminate()
            assert proc.wait(15) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(15)
