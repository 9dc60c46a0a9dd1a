"""``make viz`` and ``make mlflow-ui``: start the web UI, say where to look, stop cleanly.

Both servers fork workers (kedro-viz a uvicorn child, MLflow its uvicorn workers). Killing
only the command a user started leaves those children holding the port, and the next start
moves to another one. The server therefore runs in its own process group, and Ctrl-C,
``kill`` or a closed terminal stops the whole group.

    python -m genevae.ui viz     [--host 127.0.0.1] [--port 4141]
    python -m genevae.ui mlflow  [--host 127.0.0.1] [--port 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _mlflow_settings(project: Path) -> dict[str, Any]:
    """Tracking URI and experiment name: MLFLOW_TRACKING_URI wins over conf/base/mlflow.yml."""
    config = yaml.safe_load((project / "conf" / "base" / "mlflow.yml").read_text()) or {}
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config["server"]["mlflow_tracking_uri"]
    return {"uri": uri, "experiment": config["tracking"]["experiment"]["name"]}


def mlflow_runs_url(base_url: str, experiment: str) -> str:
    """The URL of the experiment's runs table (asked of the running UI), or of the experiment
    list before the first run.

    MLflow 3 opens experiments on its GenAI pages; ``workflowType=machine_learning`` selects
    the model-training view, where the runs table is.
    """
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        with urllib.request.urlopen(
            f"{base_url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=30
        ) as response:
            experiment_id = json.loads(response.read())["experiment"]["experiment_id"]
    except urllib.error.HTTPError:  # 404: no run has created the experiment yet
        return f"{base_url}/#/experiments"
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def wait_until_ready(process: subprocess.Popen, url: str, timeout: float = 300) -> bool:
    """Whether ``url`` answered 200 before ``process`` exited or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return True
        time.sleep(0.5)
    return False


def run_in_group(command: list[str], announce: Callable[[subprocess.Popen], None]) -> int:
    """Run ``command`` in a new process group, ``announce`` it, and return its exit code; a
    stop signal to this process, or the command's own end, stops the whole group."""
    process = subprocess.Popen(command, start_new_session=True)

    def stop(signum: int, _frame: Any) -> None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        announce(process)
        return process.wait()
    finally:
        with suppress(ProcessLookupError):  # workers that outlived their parent
            os.killpg(process.pid, signal.SIGKILL)


def _command(args: argparse.Namespace, project: Path) -> list[str]:
    bin_dir = Path(sys.executable).parent
    where = ["--host", args.host, "--port", str(args.port)]
    if args.ui == "viz":
        return [str(bin_dir / "kedro"), "viz", "run", "--no-browser", *where]
    uri = _mlflow_settings(project)["uri"]
    workers = ["--workers", str(args.workers)]
    return [str(bin_dir / "mlflow"), "ui", *where, "--backend-store-uri", uri, *workers]


def _announce(args: argparse.Namespace, project: Path) -> Callable[[subprocess.Popen], None]:
    """Prints the URL to open once the server answers (kedro-viz: /api/main; MLflow: /health)."""
    base = f"http://{args.host}:{args.port}"

    def announce(process: subprocess.Popen) -> None:
        ready = base + ("/api/main" if args.ui == "viz" else "/health")
        if not wait_until_ready(process, ready):
            return
        if args.ui == "viz":
            print(f"\nPipeline graph (kedro-viz): open {base}  (Ctrl-C stops it)", flush=True)
            return
        url = mlflow_runs_url(base, _mlflow_settings(project)["experiment"])
        print(f"\nMLflow runs table: open {url}  (Ctrl-C stops it)", flush=True)

    return announce


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Which UI, where it listens (127.0.0.1 unless told otherwise) and on which port."""
    parser = argparse.ArgumentParser(
        prog="python -m genevae.ui", description=__doc__.split("\n")[0]
    )
    parser.add_argument("ui", choices=("viz", "mlflow"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int, default=1, help="MLflow UI workers")
    args = parser.parse_args(argv)
    args.port = args.port or (4141 if args.ui == "viz" else 5000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    project = Path.cwd()
    return run_in_group(_command(args, project), _announce(args, project))


if __name__ == "__main__":
    sys.exit(main())
