"""Train a tiny VEGA with per-epoch checkpoints, slowly enough for a test to SIGKILL it.

Run as ``python -m tests.reliability.train_until_killed`` from the project root. Every epoch
start is appended (and fsynced) to ``--epoch-log``; ``--result`` receives a JSON summary when
training finishes. With ``--mlflow-uri`` the run logs into MLflow: a new run whose id is
written to ``--mlflow-run-id-file``, or, when that file already exists, the same run again
(``mlflow.start_run(run_id=...)``), which is how a resumed training continues its run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from genevae.models.vega import VEGA
from genevae.training import TensorData, TrainingSettings, encode, train_model
from tests.reliability.tiny import tiny_mask, tiny_modules, tiny_vega


class SlowVEGA(VEGA):
    """VEGA that appends each epoch it starts to a file (fsynced), then waits a little."""

    epoch_log: Path
    seconds_per_epoch: float = 0.0

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        with self.epoch_log.open("a") as handle:
            handle.write(f"{epoch}\n")
            handle.flush()
            os.fsync(handle.fileno())
        time.sleep(self.seconds_per_epoch)


def _mlflow_run(uri: str | None, run_id_file: Path | None):
    if uri is None:
        return nullcontext()
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("reliability")
    if run_id_file.exists():
        return mlflow.start_run(run_id=run_id_file.read_text().strip())
    run = mlflow.start_run()
    run_id_file.write_text(run.info.run_id)
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--max-epochs", type=int, required=True)
    parser.add_argument("--epoch-log", type=Path, required=True)
    parser.add_argument("--seconds-per-epoch", type=float, default=0.0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--result", type=Path)
    parser.add_argument("--mlflow-uri")
    parser.add_argument("--mlflow-run-id-file", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(1)
    synthetic = tiny_modules()
    data = TensorData({"x": synthetic.adata.X})
    model = tiny_vega(tiny_mask(synthetic), model_class=SlowVEGA)
    model.epoch_log, model.seconds_per_epoch = args.epoch_log, args.seconds_per_epoch
    settings = TrainingSettings(
        max_epochs=args.max_epochs,
        batch_size=50,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        progress_bar=False,
    )
    with _mlflow_run(args.mlflow_uri, args.mlflow_run_id_file):
        result = train_model(model, data, None, settings, log_to_mlflow=args.mlflow_uri is not None)
    latent = encode(model, data)
    weights_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    summary = {
        "epochs_run": result.epochs_run,
        "history_epochs": sorted(int(e) for e in result.history["epoch"].unique()),
        "latent_finite": bool(np.isfinite(latent).all()),
        "weights_finite": weights_finite,
    }
    if args.result is not None:
        args.result.write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
