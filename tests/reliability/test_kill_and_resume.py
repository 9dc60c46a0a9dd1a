"""SIGKILL a real training process mid-run, resume it in a new process, check what it did.

The training runs as a subprocess (``tests/reliability/train_until_killed.py``) with a
checkpoint every epoch; the test kills it with SIGKILL once three epoch checkpoints exist,
then resumes with ``resume: true`` and checks that exactly the remaining epochs ran, that the
final model is finite, and (MLflow variant) that both processes logged into one MLflow run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from tests.conftest import PROJECT_ROOT

MAX_EPOCHS = 8
KILL_AFTER_CHECKPOINTS = 3
SCRIPT = "tests.reliability.train_until_killed"


def _start(workdir: Path, *extra: str, seconds_per_epoch: float, log: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        SCRIPT,
        "--checkpoint-dir",
        str(workdir / "checkpoints"),
        "--max-epochs",
        str(MAX_EPOCHS),
        "--epoch-log",
        str(workdir / log),
        "--seconds-per-epoch",
        str(seconds_per_epoch),
        *extra,
    ]
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _epoch_checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("epoch*.ckpt")) if folder.is_dir() else []


def _kill_after_checkpoints(process: subprocess.Popen, folder: Path, timeout: float) -> None:
    """SIGKILL ``process`` as soon as KILL_AFTER_CHECKPOINTS epoch checkpoints exist."""
    deadline = time.monotonic() + timeout
    while len(_epoch_checkpoints(folder)) < KILL_AFTER_CHECKPOINTS:
        if process.poll() is not None:
            pytest.fail(f"training exited early ({process.returncode}): {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {KILL_AFTER_CHECKPOINTS} checkpoints within {timeout} s")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def _logged_epochs(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def _kill_then_resume(workdir: Path, *mlflow_args: str) -> tuple[int, dict, list[int]]:
    """Run, SIGKILL, resume; return the epoch in last.ckpt, the resumed summary and its epochs."""
    first = _start(workdir, *mlflow_args, seconds_per_epoch=0.5, log="first_run_epochs.txt")
    _kill_after_checkpoints(first, workdir / "checkpoints", timeout=120)
    assert _logged_epochs(workdir / "first_run_epochs.txt")[-1] < MAX_EPOCHS - 1, "not mid-run"
    # Lightning checkpoints hold tensors and plain containers only: weights_only loading works.
    checkpoint = torch.load(workdir / "checkpoints" / "last.ckpt", weights_only=True)
    last_completed = int(checkpoint["epoch"])

    result = workdir / "result.json"
    second = _start(
        workdir,
        *mlflow_args,
        "--resume",
        "--result",
        str(result),
        seconds_per_epoch=0.0,
        log="resumed_run_epochs.txt",
    )
    _, stderr = second.communicate(timeout=180)
    assert second.returncode == 0, stderr[-3000:]
    return (
        last_completed,
        json.loads(result.read_text()),
        _logged_epochs(workdir / "resumed_run_epochs.txt"),
    )


def test_sigkill_mid_training_resumes_exactly_the_remaining_epochs(tmp_path: Path) -> None:
    last_completed, summary, resumed_epochs = _kill_then_resume(tmp_path)

    # last.ckpt is written just after the epoch's own file: a kill between the two leaves it
    # one epoch behind (seen at load 19), and the resume then starts one epoch earlier.
    assert last_completed >= KILL_AFTER_CHECKPOINTS - 2
    remaining = list(range(last_completed + 1, MAX_EPOCHS))
    assert resumed_epochs == remaining
    assert summary["history_epochs"] == remaining
    assert summary["epochs_run"] == MAX_EPOCHS
    assert summary["weights_finite"] and summary["latent_finite"]
    checkpointed = [
        int(p.stem.removeprefix("epoch")) for p in _epoch_checkpoints(tmp_path / "checkpoints")
    ]
    assert checkpointed == list(range(MAX_EPOCHS))


@pytest.mark.slow
def test_resumed_training_logs_into_the_same_mlflow_run(tmp_path: Path) -> None:
    """Continuing the MLflow run is the caller's job: ``mlflow.start_run(run_id=...)``.

    The killed process leaves its run in status RUNNING; the resumed process reopens it by
    id, appends the remaining epochs' metrics and ends it as FINISHED. An epoch whose metrics
    were logged but whose checkpoint was not yet written when the kill came is trained and
    logged again, so a step can hold two values (the later one is the resumed run's).
    """
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id_file = tmp_path / "mlflow_run_id.txt"
    mlflow_args = ("--mlflow-uri", uri, "--mlflow-run-id-file", str(run_id_file))
    last_completed, summary, resumed_epochs = _kill_then_resume(tmp_path, *mlflow_args)

    assert resumed_epochs == list(range(last_completed + 1, MAX_EPOCHS))
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id_file.read_text().strip())
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train_loss")}
    assert steps == set(range(MAX_EPOCHS))
