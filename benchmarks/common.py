"""Helpers shared by the benchmarks: machine facts, the matmul floor, step timing, results."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from genevae.models.base import Batch, GenerativeModel
from genevae.training import InMemoryBatches, TensorData, TrainingSettings, train_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCALES = ("full", "toy")


def check_scale(scale: str) -> None:
    """Benchmarks run at ``full`` (the issue's sizes) or ``toy`` (the smoke test's) size."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, threads, load of the shared machine, versions."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active)"),
    }


def floor_probe(scale: str) -> dict[str, float]:
    """Arguments of :func:`matmul_gflops`: a 1 s 2048² probe at full scale, a tiny one for toys."""
    return {"seconds": 1.0, "size": 2048} if scale == "full" else {"seconds": 0.01, "size": 256}


def matmul_gflops(seconds: float = 1.0, size: int = 2048) -> float:
    """Sustained float32 matmul throughput (GFLOP/s) of torch on all its threads.

    A square ``size`` product repeated for about ``seconds``: the rate a perfectly
    compute-bound model could reach on this machine right now.
    """
    return matmul_rates(seconds, size)["wall"]


def matmul_rates(seconds: float = 1.0, size: int = 2048) -> dict[str, float]:
    """:func:`matmul_gflops` per wall second (``wall``) and per CPU second of this process (``cpu``).

    On a shared machine the wall rate counts the time other jobs hold the cores; the CPU
    rate counts only the work (one core's rate when the threads ran in parallel).
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    repeats, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        torch.mm(a, b, out=out)
        repeats += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            flops = 2.0 * size**3 * repeats
            cpu = max(time.process_time() - cpu_start, 1e-9)
            return {"wall": flops / elapsed / 1e9, "cpu": flops / cpu / 1e9}


def flop_counts(model: GenerativeModel, batch: Batch) -> dict[str, float]:
    """Matmul FLOPs of one training step on ``batch``: forward, and forward + backward.

    Counted by torch's FlopCounterMode (matrix products only; elementwise work excluded).
    """
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = model.loss(batch)["loss"]
    forward = counter.get_total_flops()
    with counter:
        model.loss(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    del loss
    return {"forward": float(forward), "forward_backward": float(counter.get_total_flops())}


class StepClock:
    """Timestamps every ``model.loss`` call: the gaps are whole training steps.

    A gap covers batch assembly, forward, backward, optimiser step and Lightning's
    bookkeeping, i.e. everything an epoch spends per batch.
    """

    def __init__(
        self,
        model: GenerativeModel,
        stop_after: int | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []  # this process's CPU time at the same moments
        self.stop_after = stop_after
        self.on_step = on_step
        self._loss = model.loss
        model.loss = self._timed_loss  # instance attribute shadows the method

    def _timed_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.stamps.append(time.perf_counter())
        self.cpu_stamps.append(time.process_time())
        if self.stop_after is not None and len(self.stamps) > self.stop_after:
            raise StopTraining
        if self.on_step is not None:
            self.on_step(len(self.stamps))
        return self._loss(batch)

    def step_seconds(self, warmup: int) -> list[float]:
        """Durations of the steps after the first ``warmup`` ones."""
        return np.diff(self.stamps)[warmup:].tolist()

    def step_cpu_seconds(self, warmup: int) -> list[float]:
        """CPU seconds (all threads) of the steps after the first ``warmup`` ones."""
        return np.diff(self.cpu_stamps)[warmup:].tolist()


class StopTraining(Exception):
    """Raised from inside a step to end a timing run after enough batches."""


def summarise_steps(seconds: list[float], cpu_seconds: list[float]) -> dict[str, float]:
    return {
        "n_timed_steps": len(seconds),
        "step_seconds_mean": statistics.fmean(seconds),
        "step_seconds_median": statistics.median(seconds),
        "step_cpu_seconds_mean": statistics.fmean(cpu_seconds),
    }


def time_training_steps(
    model: GenerativeModel,
    arrays: Mapping[str, Any],
    settings: TrainingSettings,
    *,
    n_steps: int,
    warmup: int,
) -> dict[str, float]:
    """Time ``n_steps`` training steps of ``train_model`` after ``warmup`` untimed ones.

    ``arrays`` must hold at least ``(warmup + n_steps + 1) * batch_size`` rows; the run
    stops itself after that many batches, so the data size sets nothing else.
    """
    clock = StepClock(model, stop_after=warmup + n_steps + 1)
    with quiet(), contextlib.suppress(StopTraining):
        train_model(model, TensorData(dict(arrays)), None, settings, log_to_mlflow=False)
    del model.loss  # back to the class method
    if len(clock.stamps) < warmup + n_steps + 1:
        raise RuntimeError(
            f"only {len(clock.stamps)} steps ran; give at least "
            f"{(warmup + n_steps + 1) * settings.batch_size} rows"
        )
    return summarise_steps(
        clock.step_seconds(warmup)[:n_steps], clock.step_cpu_seconds(warmup)[:n_steps]
    )


def time_bare_steps(
    model: GenerativeModel,
    arrays: Mapping[str, Any],
    settings: TrainingSettings,
    *,
    n_steps: int,
    warmup: int,
) -> dict[str, float]:
    """The steps of :func:`time_training_steps` in a plain PyTorch loop, without Lightning.

    Same batches, loss, fused Adam and projection hook: the gap to the training stack's step
    is Lightning's and the trainer's per-step cost; the gap to the FLOP floor is the model's
    own non-matmul work and the matmul kernels' efficiency at these shapes.
    """
    model.train()
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        eps=settings.adam_eps,
        fused=True,
    )
    batches = InMemoryBatches(TensorData(dict(arrays)), settings.batch_size, seed=settings.seed)
    stamps, cpu_stamps = [], []
    for _, batch in zip(range(warmup + n_steps + 1), batches, strict=False):
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        optimizer.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()
        optimizer.step()
        model.after_optimizer_step()
    return summarise_steps(np.diff(stamps)[warmup:].tolist(), np.diff(cpu_stamps)[warmup:].tolist())


def bench_settings(**overrides: Any) -> TrainingSettings:
    """TrainingSettings for timing: one epoch, no progress bar, pipeline defaults otherwise."""
    base: dict[str, Any] = {"max_epochs": 1, "progress_bar": False, "seed": 0}
    return TrainingSettings(**{**base, **overrides})


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Lightning's banner lines and warnings while a benchmark trains."""
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_result(name: str, payload: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``payload`` (plus machine facts) to ``<results_dir>/<name>.json``."""
    directory = RESULTS_DIR if results_dir is None else Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    document = {"benchmark": name, "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class RssPoller:
    """Samples this process's resident set size every ``interval`` seconds in a thread.

    ``mark(phase)`` starts a new phase; ``peaks()`` gives the highest sample per phase, so
    one process can report the peak of each stage (``ru_maxrss`` only knows the overall one).
    """

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._phase = "start"
        self._peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss
        self._peaks[self._phase] = max(self._peaks.get(self._phase, 0), rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self._interval)

    def mark(self, phase: str) -> None:
        self._sample()
        self._phase = phase
        self._sample()

    def peaks(self) -> dict[str, int]:
        self._sample()
        return dict(self._peaks)


def max_rss_bytes() -> int:
    """Lifetime peak RSS of this process (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start
