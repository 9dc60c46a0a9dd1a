"""Benchmark 5: ``kedro run`` start-up, from process start to the first node running.

Runs ``kedro run --pipeline data_processing --nodes data_processing.tcga.combine_cohorts``
in a throw-away copy of the project (its conf, fresh data folders, the raw files linked in)
and timestamps the log lines: the first ``Loading data from`` (start-up before any data is
read) and the first ``Running node`` (the issue's measure, which also includes reading the
node's inputs). The process is stopped as soon as the node starts. The first run of a fresh
copy also creates the MLflow database; it is reported separately from the warm runs.

Warm runs alternate with ``python -c "import torch"`` (the least any torch project pays), so
the ratio of the two survives the load of a shared machine; the child's CPU seconds up to the
node line are recorded too. A last run under ``python -X importtime`` shows which imports
dominate and which top-level import first pulled each package in.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import check_scale

NAME = "startup"
TARGET_SECONDS = 5.0
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENEVAE_DATA_MIRROR", PROJECT_ROOT.parent / "shared" / "data"))
NODE = "data_processing.tcga.combine_cohorts"
LOADING, RUNNING = "Loading data from", "Running node"
DATA_LAYERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input")
DATA_LAYERS += ("06_models", "07_model_output", "08_reporting")


def project_skeleton(root: Path) -> None:
    """pyproject + conf (an empty local layer) + empty data layers: a project kedro can run.

    The package is installed (editable) in the venv, so ``src`` stays empty.
    """
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    for layer in DATA_LAYERS:
        (root / "data" / layer).mkdir(parents=True)


def make_project_copy(root: Path) -> bool:
    """A :func:`project_skeleton` in ``root`` with the raw files linked in.

    Returns False when no raw data can be found (neither data/01_raw nor the shared mirror).
    """
    project_skeleton(root)
    raw_files = sorted((PROJECT_ROOT / "data" / "01_raw").glob("tcga_*"))
    if raw_files:
        for path in raw_files:
            (root / "data" / "01_raw" / path.name).symlink_to(path.resolve())
        return True
    if SHARED_DATA.is_dir():
        from genevae.datasets.fetch import fetch_all

        fetch_all(raw_dir=root / "data" / "01_raw", mirror=SHARED_DATA, progress=False)
        return True
    return False


def time_to_lines(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float = 180.0
) -> dict[str, Any]:
    """Run ``command``, timestamp the first LOADING and RUNNING lines, stop it at RUNNING."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    seen: dict[str, float] = {}
    output: list[str] = []
    cpu_seconds = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            for marker in (LOADING, RUNNING):
                if marker in line and marker not in seen:
                    seen[marker] = time.perf_counter() - start
            if RUNNING in seen:
                cpu_seconds = _cpu_seconds(process.pid)
                break
            if time.perf_counter() - start > timeout:
                break
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if RUNNING not in seen:
        raise RuntimeError(f"no '{RUNNING}' line from {command}:\n{''.join(output)[-3000:]}")
    return {
        "seconds_to_first_loading": seen.get(LOADING),
        "seconds_to_running_node": seen[RUNNING],
        "cpu_seconds_to_running_node": cpu_seconds,
        "output": output,
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its children so far (None if it is gone)."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            total += sum(child.cpu_times()[:2])
    except psutil.NoSuchProcess:
        return None
    return total


def import_profile(lines: list[str], top: int = 12) -> dict[str, Any]:
    """Parse ``-X importtime`` lines: slowest top-level imports and self time per package."""
    top_level: list[tuple[str, float]] = []
    self_by_package: dict[str, float] = defaultdict(float)
    pulled_in_by: dict[str, str] = {}
    pending: list[str] = []  # packages first seen below the next top-level import
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line[len("import time:") :].split("|")
        if not fields[0].strip().isdigit():
            continue  # the header line
        self_us, cumulative_us, name = int(fields[0]), int(fields[1]), fields[2]
        module = name.strip()
        package = module.split(".")[0]
        self_by_package[package] += self_us / 1e6
        if package not in pulled_in_by:
            pending.append(package)
        if name.startswith(" ") and not name.startswith("  "):  # children are printed first
            top_level.append((module, cumulative_us / 1e6))
            for nested in pending:
                pulled_in_by.setdefault(nested, module)
            pending = []
    ranked = sorted(top_level, key=lambda item: -item[1])[:top]
    packages = sorted(self_by_package.items(), key=lambda item: -item[1])[:top]
    return {
        "total_import_seconds": round(sum(self_by_package.values()), 3),
        "slowest_top_level_imports": [{"module": m, "seconds": round(s, 3)} for m, s in ranked],
        "self_seconds_by_package": [
            {"package": p, "seconds": round(s, 3), "first_imported_by": pulled_in_by.get(p)}
            for p, s in packages
        ],
    }


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "KEDRO_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "GIT_PYTHON_REFRESH": "quiet",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "400",  # one log record per line
    }
    return env


def _kedro_command(importtime: bool = False) -> list[str]:
    run = ["run", "--pipeline", "data_processing", "--nodes", NODE]
    if importtime:
        return [sys.executable, "-X", "importtime", "-m", "kedro", *run]
    kedro = Path(sys.executable).with_name("kedro")
    return [str(kedro), *run] if kedro.exists() else [sys.executable, "-m", "kedro", *run]


def _baseline_command() -> list[str]:
    """The floor of any torch project's start-up: the interpreter importing torch."""
    script = f"import torch; print('{LOADING} -'); print('{RUNNING}: baseline')"
    return [sys.executable, "-c", script]


def _toy_command(importtime: bool = False) -> list[str]:
    flags = ["-X", "importtime"] if importtime else []
    # ~50 ms of work: psutil counts CPU time in 10 ms ticks, a bare print can read as 0.0
    script = f"sum(range(3_000_000)); print('{LOADING} x'); print('{RUNNING}: toy')"
    return [sys.executable, *flags, "-c", script]


def run(scale: str = "full") -> dict[str, Any]:
    """Cold run, warm runs and an importtime run; times to the first node vs the target."""
    check_scale(scale)
    n_warm = 2 if scale == "full" else 1
    with tempfile.TemporaryDirectory(prefix="genevae-bench-startup-") as tmp:
        root = Path(tmp)
        command, baseline_command = _toy_command, _toy_command()
        if scale == "full":
            baseline_command = _baseline_command()
            if not make_project_copy(root):
                return {"scale": scale, "skipped": "no raw TCGA data (data/01_raw or mirror)"}
            command = _kedro_command
        env = _environment(root)
        cold = time_to_lines(command(), root, env)
        warm, baseline = [], []
        for _ in range(n_warm):  # alternate with the bare `import torch` baseline
            warm.append(time_to_lines(command(), root, env))
            baseline.append(time_to_lines(baseline_command, root, env))
        profiled = time_to_lines(command(importtime=True), root, env)
    warm_seconds = [r["seconds_to_running_node"] for r in warm]
    baseline_seconds = [r["seconds_to_running_node"] for r in baseline]
    warm_cpu = [r["cpu_seconds_to_running_node"] for r in warm]
    median = statistics.median(warm_seconds)
    ratios = [w / b for w, b in zip(warm_seconds, baseline_seconds, strict=True)]
    return {
        "scale": scale,
        "command": " ".join(["kedro", *_kedro_command()[1:]]),
        "method": (
            "wall time from process start to the first log line with 'Running node' "
            "(and to the first 'Loading data from'); cold = first run of a fresh project "
            "copy (creates mlflow.db), warm = the following runs"
        ),
        "cold_seconds_to_running_node": cold["seconds_to_running_node"],
        "warm_seconds_to_running_node": warm_seconds,
        "warm_seconds_to_first_loading": [r["seconds_to_first_loading"] for r in warm],
        "median_seconds_to_running_node": median,
        "warm_cpu_seconds_to_running_node": warm_cpu,
        "baseline_command": "python -c 'import torch'",
        "baseline_seconds": baseline_seconds,
        "ratio_to_import_torch": statistics.median(ratios),
        "imports": import_profile(profiled["output"]),
        "target_seconds": TARGET_SECONDS,
        "meets_target": median < TARGET_SECONDS,
        "note": (
            "wall seconds grow with the shared machine's load (see machine.load_average_1min); "
            "CPU seconds and the ratio to a bare `import torch` run alongside do much less"
        ),
    }
