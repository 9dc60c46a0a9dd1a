"""GPU check: train every model on CUDA, run the Bayes factors and the sparse decoder there,
compare with the CPU, and print samples/s and peak GPU memory as JSON.

    python -m benchmarks.gpu_check                 # CUDA if present, else the CPU fallback
    python -m benchmarks.gpu_check --out gpu.json  # also write the JSON to a file

On CUDA (sizes of the issue, synthetic data; under 5 minutes on one recent GPU):

* VEGA at 200,000 cells × 5,000 genes (675 Reactome-like modules, encoder 2 × 800,
  batch 128), 300 training steps through ``train_model``;
* GPO-VAE at Replogle K562 size: 82,865 training cells, 1,546 GRN nodes (622 perturbed +
  924 extra), 5,000 genes, latent 100, hidden 400, 5 particles, batch 512, 200 steps;
* Tybalt at 10,000 × 5,000, batch 50, 300 steps;
* Bayes factors over the 200,000 VEGA cells (5,000 cells per group, 10,000 pairs);
* the sparse masked decoder (675 → 5,000) forward and backward.

Without CUDA the same code runs on the CPU at small sizes (what the test runs); the
comparison then checks the CPU against itself, so it only proves the script works.

Checks, each against the same computation on the CPU in float32:

* decoder: sparse product on the device vs the dense masked product on the CPU, outputs and
  all gradients within ``max |Δ| ≤ 1e-4 · max |reference|``;
* each trained model: the posterior means of one batch (eval mode, no noise) on the device
  vs the CPU within ``max |Δ| ≤ 1e-3 · max |reference|``, and a finite training loss;
* Bayes factors: ``p_h1`` per module within 0.05 of the CPU's (device and CPU draw their
  posterior noise from different generators, so they agree up to Monte-Carlo error:
  about 0.005 for 10,000 pairs).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import bench_settings, quiet, time_training_steps  # noqa: E402
from benchmarks.data import gpo_arrays, reactome_like_mask, tybalt_arrays, vega_arrays  # noqa: E402
from genevae.analysis.bayes_factor import differential_activity, latent_sampler  # noqa: E402
from genevae.models.base import GenerativeModel  # noqa: E402
from genevae.models.gpo_vae import GPOVAE  # noqa: E402
from genevae.models.layers import MaskedLinear  # noqa: E402
from genevae.models.tybalt import Tybalt  # noqa: E402
from genevae.models.vega import VEGA  # noqa: E402
from genevae.training import InMemoryBatches, TensorData  # noqa: E402

DECODER_TOLERANCE = 1e-4
ENCODING_TOLERANCE = 1e-3
P_H1_TOLERANCE = 0.05


@dataclass(frozen=True)
class Sizes:
    vega_cells: int
    genes: int
    modules: int
    hidden: int
    gpo_cells: int
    gpo_nodes: int
    gpo_latent: int
    gpo_hidden: int
    tybalt_samples: int
    steps: int
    gpo_steps: int
    bf_samples: int
    bf_pairs: int


SIZES = {
    "cuda": Sizes(200_000, 5_000, 675, 800, 82_865, 1_546, 100, 400, 10_000, 300, 200, 5000, 10000),
    "cpu": Sizes(1_000, 200, 12, 32, 600, 20, 8, 32, 400, 6, 4, 200, 400),
}


def _settings(device: str, batch_size: int, **overrides: Any):
    accelerator = "gpu" if device == "cuda" else "cpu"
    return bench_settings(
        batch_size=batch_size, accelerator=accelerator, devices=1, max_epochs=50, **overrides
    )


def _train(
    device: str, model: GenerativeModel, arrays: dict[str, Any], batch_size: int, steps: int
) -> dict[str, Any]:
    """Time ``steps`` training steps on ``device``; samples/s and peak device memory."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timing = time_training_steps(
        model, arrays, _settings(device, batch_size), n_steps=steps, warmup=3
    )
    result = {
        "batch_size": batch_size,
        "timed_steps": timing["n_timed_steps"],
        "samples_per_second": batch_size / timing["step_seconds_mean"],
    }
    if device == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def _first_batch(arrays: dict[str, Any], batch_size: int) -> dict[str, torch.Tensor]:
    return next(iter(InMemoryBatches(TensorData(arrays), batch_size, shuffle=False)))


def encoding_check(model: GenerativeModel, batch: dict[str, torch.Tensor], device: str) -> dict:
    """Posterior means of one batch on ``device`` vs a CPU copy of the trained model.

    ``encode`` runs in eval mode and draws no noise, so both devices compute the same
    function; the training loss on the device must also be finite.
    """
    outputs = []
    for target in (device, "cpu"):
        moved = copy.deepcopy(model).to(target).eval()
        inputs = {key: value.to(target) for key, value in batch.items()}
        with torch.no_grad():
            outputs.append(moved.encode(inputs).cpu())
            if target == device:
                loss = float(moved.train().loss(inputs)["loss"])
    mine, reference = outputs
    relative = float((mine - reference).abs().max() / reference.abs().max().clamp(min=1e-12))
    return {
        "max_relative_difference": relative,
        "tolerance": ENCODING_TOLERANCE,
        "device_training_loss": loss,
        "passed": bool(np.isfinite(loss) and relative <= ENCODING_TOLERANCE),
    }


def decoder_check(device: str, sizes: Sizes, rng: np.random.Generator) -> dict[str, Any]:
    """Sparse masked decoder on ``device`` vs the dense product on the CPU."""
    mask = torch.from_numpy(reactome_like_mask(sizes.genes, sizes.modules, rng))
    dense = MaskedLinear(mask, implementation="dense")
    sparse = MaskedLinear(mask, implementation="sparse")
    sparse.load_state_dict(dense.state_dict())
    sparse.to(device)
    z = torch.randn(128, sizes.modules, generator=torch.Generator().manual_seed(0))
    results = []
    for layer, target in ((dense, "cpu"), (sparse, device)):
        inputs = z.to(target).requires_grad_(True)
        output = layer(inputs)
        output.square().sum().backward()
        results.append([t.detach().cpu() for t in (output, inputs.grad, layer.weight.grad)])
    worst = max(
        float((mine - ref).abs().max() / ref.abs().max().clamp(min=1e-12))
        for mine, ref in zip(results[1], results[0], strict=True)
    )
    return {
        "max_relative_difference": worst,
        "tolerance": DECODER_TOLERANCE,
        "passed": worst <= DECODER_TOLERANCE,
        "live_weight_fraction": sparse.density,
    }


def bayes_factor_check(
    device: str, model: VEGA, x: Any, sizes: Sizes, labels: np.ndarray
) -> dict[str, Any]:
    """Differential activity on the device (timed) and on the CPU; largest p_h1 gap."""
    tables, seconds = [], []
    for target in (device, "cpu"):
        moved = copy.deepcopy(model).to(target)
        start = time.perf_counter()
        table = differential_activity(
            latent_sampler(moved, x),
            labels,
            "a",
            "b",
            n_samples=sizes.bf_samples,
            n_pairs=sizes.bf_pairs,
        )
        seconds.append(time.perf_counter() - start)
        tables.append(table.set_index("module")["p_h1"])
    gap = float((tables[0] - tables[1]).abs().max())
    return {
        "device_seconds": seconds[0],
        "cpu_seconds": seconds[1],
        "max_p_h1_difference": gap,
        "tolerance": P_H1_TOLERANCE,
        "passed": gap <= P_H1_TOLERANCE,
    }


def _models(sizes: Sizes, rng: np.random.Generator) -> dict[str, Callable[[], tuple]]:
    """Per model: a builder of (model, arrays, batch size, steps)."""

    def vega():
        mask = reactome_like_mask(sizes.genes, sizes.modules, rng)
        model = VEGA(n_genes=sizes.genes, n_modules=sizes.modules, hidden=sizes.hidden, mask=mask)
        return model, vega_arrays(sizes.vega_cells, sizes.genes, rng), 128, sizes.steps

    def gpo_vae():
        model = GPOVAE(
            n_genes=sizes.genes,
            n_nodes=sizes.gpo_nodes,
            n_latent=sizes.gpo_latent,
            decoder_hidden=sizes.gpo_hidden,
            basal_encoder_hidden=sizes.gpo_hidden,
            embedding_encoder_hidden=sizes.gpo_hidden,
        )
        arrays = gpo_arrays(sizes.gpo_cells, sizes.genes, sizes.gpo_nodes, rng)
        return model, arrays, 512, sizes.gpo_steps

    def tybalt():
        model = Tybalt(n_genes=sizes.genes, latent_dim=100)
        return model, tybalt_arrays(sizes.tybalt_samples, sizes.genes, rng), 50, sizes.steps

    return {"vega": vega, "gpo_vae": gpo_vae, "tybalt": tybalt}


def _train_and_check(
    device: str, model: GenerativeModel, arrays: dict[str, Any], batch_size: int, steps: int
) -> dict[str, Any]:
    with quiet():
        entry = _train(device, model, arrays, batch_size, steps)
    entry["encoding_check"] = encoding_check(model, _first_batch(arrays, 256), device)
    entry["passed"] = entry["encoding_check"]["passed"]
    return entry


def _guarded(check: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``check(*args)``; an exception fails that check only, so one run reports all of them."""
    try:
        return check(*args)
    except Exception as exc:  # a first run on new hardware: record what broke, go on
        return {"passed": False, "error": f"{type(exc).__name__}: {exc}"}


def run(device: str | None = None) -> dict[str, Any]:
    """Every check on ``device`` (CUDA when available); the JSON-ready result."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = SIZES["cuda" if device == "cuda" else "cpu"]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    result: dict[str, Any] = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu fallback",
        "torch_version": torch.__version__,
        "sizes": sizes.__dict__,
        "decoder": _guarded(decoder_check, device, sizes, rng),
        "models": {},
    }
    for name, build in _models(sizes, rng).items():
        torch.manual_seed(0)
        model, arrays, batch_size, steps = build()
        result["models"][name] = _guarded(
            _train_and_check, device, model, arrays, batch_size, steps
        )
        if name == "vega":
            labels = np.where(rng.random(sizes.vega_cells) < 0.5, "a", "b")
            result["bayes_factors"] = _guarded(
                bayes_factor_check, device, model, arrays["x"], sizes, labels
            )
        del model, arrays
    checks = [result["decoder"], result["bayes_factors"], *result["models"].values()]
    result["passed"] = all(check["passed"] for check in checks)
    result["seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    text = json.dumps(run(args.device), indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if json.loads(text)["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
