"""Benchmark 1: training epoch time of each model ÷ the time its matmul FLOPs need at peak.

The floor is what a perfectly compute-bound implementation would take: the model's matrix
product FLOPs per epoch (forward + backward ≈ 3 × forward, the issue's definition) divided by
the sustained float32 matmul rate of this machine, measured in the same process just before
and just after the model is timed. Everything else a step does (data batching, elementwise
ops, the optimiser update, Lightning's bookkeeping) shows up as a ratio above 1.

An epoch is extrapolated from a fixed number of timed steps through the real training stack
(``genevae.training.train_model``) after a few untimed warm-up steps.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.common import (
    bench_settings,
    check_scale,
    floor_probe,
    flop_counts,
    matmul_rates,
    quiet,
    time_bare_steps,
    time_training_steps,
)
from benchmarks.data import gpo_arrays, reactome_like_mask, tybalt_arrays, vega_arrays
from genevae.models.base import GenerativeModel
from genevae.models.gpo_vae import GPOVAE
from genevae.models.tybalt import Tybalt
from genevae.models.vega import VEGA
from genevae.training import InMemoryBatches, TensorData

NAME = "flop_floor"
TARGET_RATIO = 1.5
Builder = Callable[[int, np.random.Generator], tuple[GenerativeModel, dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """One model at one size: what an epoch holds and how many steps to time."""

    name: str
    description: str
    n_cells_per_epoch: int
    batch_size: int
    n_steps: int
    warmup: int
    build: Builder
    settings: dict[str, Any] = field(default_factory=dict)
    rounds: int = 3

    @property
    def n_rows(self) -> int:
        return (self.warmup + self.n_steps + 2) * self.batch_size


def _tybalt(n_genes: int, latent: int) -> Builder:
    def build(n_rows: int, rng: np.random.Generator):
        return Tybalt(n_genes=n_genes, latent_dim=latent), tybalt_arrays(n_rows, n_genes, rng)

    return build


def _vega(n_genes: int, n_modules: int, hidden: int) -> Builder:
    def build(n_rows: int, rng: np.random.Generator):
        mask = reactome_like_mask(n_genes, n_modules, rng)
        model = VEGA(n_genes=n_genes, n_modules=n_modules, hidden=hidden, mask=mask)
        return model, vega_arrays(n_rows, n_genes, rng)

    return build


def _gpo(n_genes: int, n_nodes: int, latent: int, hidden: int) -> Builder:
    def build(n_rows: int, rng: np.random.Generator):
        model = GPOVAE(
            n_genes=n_genes,
            n_nodes=n_nodes,
            n_latent=latent,
            decoder_hidden=hidden,
            basal_encoder_hidden=hidden,
            embedding_encoder_hidden=hidden,
        )
        return model, gpo_arrays(n_rows, n_genes, n_nodes, rng)

    return build


TYBALT_SETTINGS = {"learning_rate": 5e-4, "adam_eps": 1e-7}
VEGA_SETTINGS = {"learning_rate": 1e-4, "weight_decay": 5e-4, "loss_reduction": "sum"}
GPO_SETTINGS = {"learning_rate": 3e-4, "weight_decay": 1e-6, "gradient_clip_val": 100.0}


def cases(scale: str) -> list[Case]:
    """The issue's three models at full size, or tiny versions for the smoke test."""
    check_scale(scale)
    if scale == "toy":
        return [
            Case("tybalt", "toy", 320, 16, 3, 1, _tybalt(60, 8), TYBALT_SETTINGS, 2),
            Case("vega", "toy", 320, 16, 3, 1, _vega(80, 12, 16), VEGA_SETTINGS, 2),
            Case("gpo_vae", "toy", 320, 16, 2, 1, _gpo(60, 10, 8, 16), GPO_SETTINGS, 2),
        ]
    return [
        Case(
            "tybalt",
            "10,000 samples × 5,000 genes, latent 100, batch 50 (Tybalt paper)",
            10_000,
            50,
            30,
            3,
            _tybalt(5000, 100),
            TYBALT_SETTINGS,
            4,
        ),
        Case(
            "vega",
            "18,000 cells × 7,000 genes, 674 Reactome-like modules + 1 extra node, "
            "encoder 2 × 800, batch 128 (VEGA paper)",
            18_000,
            128,
            8,
            2,
            _vega(7000, 675, 800),
            VEGA_SETTINGS,
            3,
        ),
        Case(
            "gpo_vae",
            "Adamson-sized: 29,590 training cells × 5,000 genes, 415 GRN nodes (68 perturbed "
            "+ 347 extra), latent 100, hidden 400, 5 particles, batch 512",
            29_590,
            512,
            3,
            1,
            _gpo(5000, 415, 100, 400),
            GPO_SETTINGS,
            2,
        ),
    ]


def _first_batch(arrays: dict[str, Any], batch_size: int) -> dict[str, Any]:
    return next(iter(InMemoryBatches(TensorData(arrays), batch_size, shuffle=False)))


def measure_case(case: Case, probe: dict[str, float], seed: int = 0) -> dict[str, Any]:
    """Time one model in rounds, each between two matmul probes; median ratio over rounds.

    Pairing every timing with the probes right around it keeps the ratio meaningful while
    other work on the shared machine comes and goes.
    """
    rng = np.random.default_rng(seed)
    model, arrays = case.build(case.n_rows, rng)
    with quiet():
        flops = flop_counts(model, _first_batch(arrays, case.batch_size))
    steps_per_epoch = math.ceil(case.n_cells_per_epoch / case.batch_size)
    floor_flops = 3.0 * flops["forward"] * steps_per_epoch
    settings = bench_settings(batch_size=case.batch_size, **case.settings)
    rounds = []
    for _ in range(case.rounds):
        before = matmul_rates(**probe)
        steps = time_training_steps(
            model, arrays, settings, n_steps=case.n_steps, warmup=case.warmup
        )
        bare = time_bare_steps(model, arrays, settings, n_steps=case.n_steps, warmup=case.warmup)
        after = matmul_rates(**probe)
        gflops = (before["wall"] + after["wall"]) / 2
        cpu_gflops = (before["cpu"] + after["cpu"]) / 2
        epoch_seconds = steps_per_epoch * steps["step_seconds_mean"]
        floor_seconds = floor_flops / (gflops * 1e9)
        floor_cpu_seconds = floor_flops / (cpu_gflops * 1e9)
        rounds.append(
            {
                **steps,
                "bare_loop_step_seconds_mean": bare["step_seconds_mean"],
                "bare_loop_step_cpu_seconds_mean": bare["step_cpu_seconds_mean"],
                "matmul_gflops": gflops,
                "matmul_gflops_per_cpu_second": cpu_gflops,
                "epoch_seconds_extrapolated": epoch_seconds,
                "ratio_to_floor": epoch_seconds / floor_seconds,
                "bare_loop_ratio_to_floor": steps_per_epoch
                * bare["step_seconds_mean"]
                / floor_seconds,
                "cpu_ratio_to_floor": steps_per_epoch
                * steps["step_cpu_seconds_mean"]
                / floor_cpu_seconds,
                "bare_loop_cpu_ratio_to_floor": steps_per_epoch
                * bare["step_cpu_seconds_mean"]
                / floor_cpu_seconds,
            }
        )
    ratio = statistics.median(r["ratio_to_floor"] for r in rounds)
    bare_ratio = statistics.median(r["bare_loop_ratio_to_floor"] for r in rounds)
    gflops = statistics.median(r["matmul_gflops"] for r in rounds)
    n_parameters = sum(p.numel() for p in model.parameters())
    return {
        "description": case.description,
        "n_cells_per_epoch": case.n_cells_per_epoch,
        "batch_size": case.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "warmup_steps_per_round": case.warmup,
        "timed_steps_per_round": case.n_steps,
        "rounds": rounds,
        "epoch_seconds_extrapolated": statistics.median(
            r["epoch_seconds_extrapolated"] for r in rounds
        ),
        "forward_matmul_flops_per_step": flops["forward"],
        "counted_forward_backward_matmul_flops_per_step": flops["forward_backward"],
        "floor_flops_per_epoch": floor_flops,
        "matmul_gflops": gflops,
        "matmul_gflops_per_cpu_second": statistics.median(
            r["matmul_gflops_per_cpu_second"] for r in rounds
        ),
        "floor_seconds_per_epoch": floor_flops / (gflops * 1e9),
        "ratio_to_floor": ratio,
        "bare_loop_ratio_to_floor": bare_ratio,
        "cpu_ratio_to_floor": statistics.median(r["cpu_ratio_to_floor"] for r in rounds),
        "bare_loop_cpu_ratio_to_floor": statistics.median(
            r["bare_loop_cpu_ratio_to_floor"] for r in rounds
        ),
        "ratio_to_counted_floor": ratio * 3.0 * flops["forward"] / flops["forward_backward"],
        "n_parameters": n_parameters,
        "optimizer_elementwise_flops_per_step_estimate": 12 * n_parameters,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }


def run(scale: str = "full", only: list[str] | None = None) -> dict[str, Any]:
    """Benchmark every model (or the named ones) and return the JSON payload."""
    selected = [case for case in cases(scale) if only is None or case.name in only]
    probe = floor_probe(scale)
    return {
        "scale": scale,
        "method": (
            "in each round, epoch seconds = steps per epoch × mean step time over the timed "
            "steps of train_model after warm-up steps (per-epoch costs such as validation "
            "excluded); floor seconds = 3 × forward matmul FLOPs per epoch ÷ sustained 2048² "
            "float32 matmul rate on all threads, probed right before and after the round; "
            "ratio_to_floor = median over rounds; "
            "ratio_to_counted_floor uses FlopCounterMode's forward+backward count instead. "
            "The optimiser's elementwise work is not in the floor (estimate given). "
            "bare_loop_ratio_to_floor times the same steps in a plain PyTorch loop (same "
            "batches, loss, fused Adam), right after the training-stack steps: its gap to "
            "ratio_to_floor is Lightning's per-step cost. "
            "cpu_ratio_to_floor (and bare_loop_cpu_ratio_to_floor) use this process's CPU "
            "seconds instead of wall seconds for both the steps and the probe: on a shared "
            "machine they count the work, not the time other jobs held the cores; they equal "
            "the wall ratio on an idle machine only where the step keeps every thread busy "
            "(single-threaded stretches such as Python and Lightning count once)."
        ),
        "models": {case.name: measure_case(case, probe) for case in selected},
    }
