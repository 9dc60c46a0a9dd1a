"""Local web servers and headless Chromium for the browser tests.

Servers bind 127.0.0.1 on a free port and run in their own process group, so stopping them
also stops their workers (``mlflow ui`` forks uvicorn workers). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
)
QUIET_ENV = {"DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}


def find_chromium() -> str | None:
    """Path of a Chromium-compatible browser, or ``None``."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now, below 49152 (kedro-viz refuses higher ones)."""
    for port in random.sample(range(20000, 49000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port between 20000 and 49000 on 127.0.0.1")


@dataclass(frozen=True)
class Server:
    """A running local server: its base URL, log file and, if seeded, a browser profile."""

    url: str
    log: Path
    profile: Path | None = None

    def get(self, path: str) -> Any:
        """GET ``path`` and decode the JSON answer."""
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON body to ``path`` and decode the JSON answer."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@dataclass(frozen=True)
class ServerCommand:
    """How to start a server and how to know it is up."""

    command: Sequence[str]
    cwd: Path
    port: int
    ready_path: str
    log: Path
    timeout: float = 120


@contextmanager
def serve(*servers: ServerCommand) -> Iterator[list[Server]]:
    """Start every server at once (they boot in parallel); yield when all answer 200.

    Each runs in its own process group, which is terminated on exit.
    """
    with ExitStack() as stack:
        processes = []
        for spec in servers:
            spec.log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(spec.log.open("wb"))
            process = subprocess.Popen(
                list(spec.command),
                cwd=spec.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **QUIET_ENV},
                start_new_session=True,
            )
            stack.callback(_stop_group, process)
            processes.append(process)
        running = [Server(url=f"http://127.0.0.1:{spec.port}", log=spec.log) for spec in servers]
        for spec, process, server in zip(servers, processes, running, strict=True):
            _wait_until_ready(process, server.url + spec.ready_path, spec.log, spec.timeout)
        yield running


def _wait_until_ready(process: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s:\n{_tail(log)}")


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _tail(log: Path, n_chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-n_chars:] if log.exists() else "(no log)"


def browse(
    chromium: str,
    url: str,
    *,
    screenshot: Path | None = None,
    profile: Path | None = None,
    window: tuple[int, int] = (1600, 1000),
    virtual_time_ms: int = 15000,
    timeout: float = 120,
) -> str:
    """Load ``url`` in headless Chromium; return the rendered DOM (and save a screenshot).

    ``--virtual-time-budget`` lets the single-page apps fetch their data and render before
    the DOM is dumped, without a fixed sleep. Pass the same ``profile`` folder to several
    calls to keep the browser cache warm (big lazily loaded bundles then come from disk).
    """
    with tempfile.TemporaryDirectory(prefix="genevae-chromium-") as fresh:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile or fresh}",
            f"--window-size={window[0]},{window[1]}",
            f"--virtual-time-budget={virtual_time_ms}",
            "--dump-dom",
        ]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            command.append(f"--screenshot={screenshot}")
        result = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=timeout, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def browse_until(
    chromium: str, url: str, ready: Callable[[str], bool], *, attempts: int = 3, **options: Any
) -> str:
    """``browse`` again (same profile: warm cache) until ``ready(dom)``; the last DOM either way.

    On a loaded machine the virtual-time budget can run out before a lazily loaded bundle
    (MLflow's chart library) has arrived from the server; a reload finds it in the cache.
    """
    for _ in range(attempts):
        dom = browse(chromium, url, **options)
        if ready(dom):
            break
    return dom


def text_of(dom: str, css_class: str) -> list[str]:
    """Texts of the elements whose class attribute contains ``css_class`` (flat elements)."""
    pattern = rf'class="[^"]*\b{re.escape(css_class)}\b[^"]*"[^>]*>([^<]*)<'
    return [match.strip() for match in re.findall(pattern, dom)]


def seed_local_storage(chromium: str, profile: Path, port: int, items: dict[str, str]) -> None:
    """Write ``items`` into the localStorage of http://127.0.0.1:``port`` in ``profile``.

    A throw-away page served on that port sets them (localStorage belongs to the origin);
    the server that later binds the port then finds them, as after a user's own settings.
    """
    page = "".join(
        f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in items.items()
    )
    with tempfile.TemporaryDirectory(prefix="genevae-seed-") as folder:
        (Path(folder) / "index.html").write_text(f"<script>{page}</script><p>seeded</p>")
        spec = ServerCommand(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", folder],
            cwd=Path(folder),
            port=port,
            ready_path="/",
            log=Path(folder) / "server.log",
        )
        with serve(spec) as (server,):
            dom = browse(chromium, server.url + "/", profile=profile, virtual_time_ms=2000)
    if "seeded" not in dom:
        raise RuntimeError(f"could not seed localStorage on port {port}: {dom[:500]}")
