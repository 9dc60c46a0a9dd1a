"""``make viz`` stops cleanly: whichever process is killed, no server keeps the port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.browser import QUIET_ENV, free_port


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _wait(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.browser
@pytest.mark.parametrize("kill", ["launcher", "server"])
def test_viz_leaves_no_server_on_the_port(vega_project: Path, kill: str) -> None:
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "genevae.ui", "viz", "--port", str(port)],
        cwd=vega_project,
        env={**os.environ, **QUIET_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert _wait(lambda: not _port_free(port), 240), "kedro-viz did not start"
        group = _server_group(launcher.pid)
        os.kill(launcher.pid if kill == "launcher" else group, signal.SIGTERM)
        assert launcher.wait(timeout=60) is not None
        assert _wait(lambda: _port_free(port), 20), f"port {port} still held after killing {kill}"
        assert _wait(lambda: not _group_alive(group), 20)
    finally:
        if launcher.poll() is None:
            launcher.kill()


def _server_group(launcher: int) -> int:
    """The process group (= pid) of the server the launcher started."""
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(launcher)], capture_output=True, text=True, check=True
    )
    return int(children.stdout.split()[0])


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
