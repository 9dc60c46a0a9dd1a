"""Benchmark 4: peak memory of scRNA preprocessing and of VEGA training on a large sparse set.

A synthetic 200,000 cells × 20,000 genes count matrix (about 6% nonzero, 1% of cells
low-quality so the QC filter really subsets) is written to an .h5ad in row chunks, never
dense. Each stage then runs in its own subprocess, which reports its peak resident set size
(a polling thread gives the peak per phase, ``ru_maxrss`` the lifetime peak):

* ``preprocess``: read the file, ``genevae.preprocessing.scrna.preprocess_scrna`` (QC
  filters, normalize_total, log1p; counts kept in a layer), write the result;
* ``preprocess_backed``: the same through ``preprocess_scrna_backed``, which reads the
  matrix from the file in row chunks;
* ``train``: read the processed file and train VEGA the way the vega pipeline does
  (``pipelines.common.fit_model``: expression_data, seeded 80/20 split, train_model), for a
  fixed number of batches; batches are densified one at a time.

The budget is 3 × the in-memory size of the sparse matrix (data + indices + indptr).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.common import check_scale

NAME = "memory"
BUDGET_FACTOR = 3.0
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    n_cells: int
    n_genes: int
    density: float
    chunk_cells: int
    n_modules: int
    hidden: int
    n_batches: int
    batch_size: int
    min_genes: int


SIZES = {
    "full": Sizes(200_000, 20_000, 0.06, 5_000, 675, 800, 40, 128, 200),
    "toy": Sizes(1_200, 400, 0.06, 500, 12, 16, 5, 64, 10),
}


def _chunk(n_cells: int, sizes: Sizes, rng: np.random.Generator) -> sp.csr_matrix:
    """UMI-like rows: skewed per-gene detection (a few genes in most cells), counts ≥ 1.

    1% of cells are low quality (half of ``min_genes`` detected genes), so QC removes them.
    """
    n_genes = sizes.n_genes
    per_cell = rng.poisson(sizes.density * n_genes, size=n_cells)
    per_cell[rng.random(n_cells) < 0.01] = sizes.min_genes // 2
    rows = np.repeat(np.arange(n_cells), per_cell)
    columns = (n_genes * rng.random(rows.size) ** 1.5).astype(np.int64)
    keys = np.sort(rows * n_genes + columns)  # np.unique is far slower here (numpy 2.4)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    values = (1 + rng.geometric(0.45, size=keys.size)).astype(np.float32)
    indptr = np.searchsorted(keys // n_genes, np.arange(n_cells + 1))
    indices = (keys % n_genes).astype(np.int32)
    return sp.csr_matrix((values, indices, indptr), shape=(n_cells, n_genes))


def write_synthetic_h5ad(path: Path, sizes: Sizes, seed: int = 0) -> dict[str, Any]:
    """Write counts chunk by chunk (append to the on-disk CSR); return nnz and bytes."""
    import h5py
    from anndata.io import sparse_dataset, write_elem

    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(rng.choice(["control", "stimulated"], sizes.n_cells)),
            "cell_type": pd.Categorical(rng.choice(["T", "B", "NK", "Mono"], sizes.n_cells)),
        },
        index=[f"cell_{i}" for i in range(sizes.n_cells)],
    )
    var = pd.DataFrame(index=[f"GENE_{j}" for j in range(sizes.n_genes)])
    nnz = 0
    with h5py.File(path, "w") as store:
        store.attrs["encoding-type"] = "anndata"
        store.attrs["encoding-version"] = "0.1.0"
        write_elem(store, "obs", obs)
        write_elem(store, "var", var)
        for start in range(0, sizes.n_cells, sizes.chunk_cells):
            n = min(sizes.chunk_cells, sizes.n_cells - start)
            chunk = _chunk(n, sizes, rng)
            nnz += chunk.nnz
            if start == 0:
                write_elem(store, "X", chunk)  # anndata makes sparse datasets resizable
            else:
                sparse_dataset(store["X"]).append(chunk)
        for key in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
            write_elem(store, key, {})
    return {"nnz": nnz, "density": nnz / (sizes.n_cells * sizes.n_genes)}


def sparse_nbytes(matrix: sp.spmatrix | sp.sparray) -> int:
    """In-memory size of a CSR/CSC matrix: data + indices + indptr."""
    return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)


# ------------------------------------------------------------------ stages (in subprocesses)
def stage_preprocess(source: Path, target: Path, sizes: Sizes) -> dict[str, Any]:
    import anndata as ad

    from benchmarks.common import RssPoller, max_rss_bytes
    from genevae.preprocessing.scrna import preprocess_scrna

    with RssPoller() as poller:
        poller.mark("read")
        adata = ad.read_h5ad(source)
        matrix_bytes = sparse_nbytes(adata.X)
        poller.mark("preprocess")
        start = time.perf_counter()
        result, report = preprocess_scrna(adata, min_genes=sizes.min_genes)
        seconds = time.perf_counter() - start
        poller.mark("write")
        result.write_h5ad(target)
        peaks = poller.peaks()
    return {
        "input_sparse_bytes": matrix_bytes,
        "output_shape": list(result.shape),
        "preprocess_seconds": seconds,
        "peak_rss_bytes_by_phase": peaks,
        "peak_rss_bytes": max_rss_bytes(),
        "qc_report": report.to_dict(orient="records"),
    }


def stage_preprocess_backed(source: Path, sizes: Sizes) -> dict[str, Any]:
    from benchmarks.common import RssPoller, max_rss_bytes
    from genevae.preprocessing.scrna import preprocess_scrna_backed

    with RssPoller() as poller:
        poller.mark("preprocess")
        start = time.perf_counter()
        result, _ = preprocess_scrna_backed(source, min_genes=sizes.min_genes)
        seconds = time.perf_counter() - start
        peaks = poller.peaks()
    return {
        "input_sparse_bytes": _input_sparse_bytes(source),
        "output_sparse_bytes": sparse_nbytes(result.X) + sparse_nbytes(result.layers["counts"]),
        "output_shape": list(result.shape),
        "preprocess_seconds": seconds,
        "peak_rss_bytes_by_phase": peaks,
        "peak_rss_bytes": max_rss_bytes(),
    }


def _input_sparse_bytes(path: Path) -> int:
    """Size the file's X would take in memory, without loading it."""
    import h5py

    with h5py.File(path, "r") as store:
        group = store["X"]
        return sum(
            group[key].size * group[key].dtype.itemsize for key in ("data", "indices", "indptr")
        )


def stage_train(source: Path, sizes: Sizes) -> dict[str, Any]:
    import anndata as ad
    import torch

    from benchmarks.common import RssPoller, StepClock, StopTraining, max_rss_bytes, quiet
    from benchmarks.data import reactome_like_mask
    from genevae.models.vega import VEGA
    from genevae.pipelines.common import expression_data, fit_model

    rss_at_step: dict[int, int] = {}
    with RssPoller() as poller:
        poller.mark("read")
        adata = ad.read_h5ad(source)
        matrix_bytes = sparse_nbytes(adata.X)
        poller.mark("build_model")
        mask = reactome_like_mask(adata.n_vars, sizes.n_modules, np.random.default_rng(0))
        model = VEGA(
            n_genes=adata.n_vars, n_modules=sizes.n_modules, hidden=sizes.hidden, mask=mask
        )
        model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        poller.mark("train")

        def record_rss(step: int) -> None:
            rss_at_step[step] = poller.peaks().get("train", 0)

        clock = StepClock(model, stop_after=sizes.n_batches, on_step=record_rss)
        training = {
            "max_epochs": 1,
            "batch_size": sizes.batch_size,
            "learning_rate": 1e-4,
            "weight_decay": 5e-4,
            "loss_reduction": "sum",
            "progress_bar": False,
        }
        start = time.perf_counter()
        try:
            with quiet():
                fit_model(
                    model,
                    expression_data(adata),
                    training,
                    validation_fraction=0.2,
                    gene_names=list(adata.var_names),
                )
        except StopTraining:
            pass
        seconds = time.perf_counter() - start
        peaks = poller.peaks()
    steps = sorted(rss_at_step)
    return {
        "input_sparse_bytes": matrix_bytes,
        "model_state_bytes": model_bytes,
        "n_batches": len(clock.stamps) - 1,
        "train_seconds": seconds,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_bytes_by_phase": peaks,
        "peak_rss_bytes": max_rss_bytes(),
        "rss_bytes_at_batch_2": rss_at_step.get(2),
        "rss_bytes_at_last_batch": rss_at_step[steps[-1]] if steps else None,
    }


def _run_stage(args: list[str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"stage {args[1]} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _gib(n_bytes: int) -> float:
    return round(n_bytes / 2**30, 3)


def run(scale: str = "full", in_process: bool = False) -> dict[str, Any]:
    """Generate the data, run both stages in subprocesses, compare peaks with the budget.

    ``in_process=True`` runs the stages in this process (smoke tests: same keys, but the
    peaks then include whatever this process already held).
    """
    check_scale(scale)
    sizes = SIZES[scale]
    with tempfile.TemporaryDirectory(prefix="genevae-bench-memory-") as tmp:
        raw, processed = Path(tmp) / "raw.h5ad", Path(tmp) / "processed.h5ad"
        start = time.perf_counter()
        written = write_synthetic_h5ad(raw, sizes)
        generate_seconds = time.perf_counter() - start
        if in_process:
            preprocess = stage_preprocess(raw, processed, sizes)
            backed = stage_preprocess_backed(raw, sizes)
            train = stage_train(processed, sizes)
        else:
            preprocess = _run_stage(["--stage", "preprocess", str(raw), str(processed), scale])
            backed = _run_stage(["--stage", "preprocess_backed", str(raw), scale])
            train = _run_stage(["--stage", "train", str(processed), scale])
    stages = {"preprocess": preprocess, "preprocess_backed": backed, "train": train}
    for stage in stages.values():
        above_start = stage["peak_rss_bytes"] - stage["peak_rss_bytes_by_phase"]["start"]
        stage["peak_over_sparse_size"] = stage["peak_rss_bytes"] / stage["input_sparse_bytes"]
        stage["peak_above_start_over_sparse_size"] = above_start / stage["input_sparse_bytes"]
        stage["meets_target"] = stage["peak_over_sparse_size"] < BUDGET_FACTOR
        stage["peak_rss_gib"] = _gib(stage["peak_rss_bytes"])
        stage["input_sparse_gib"] = _gib(stage["input_sparse_bytes"])
    return {
        "scale": scale,
        "in_process": in_process,
        "sizes": sizes.__dict__,
        "generated": {**written, "seconds": generate_seconds},
        "method": (
            "each stage in a fresh subprocess; peak_rss_bytes = ru_maxrss (includes the "
            "interpreter and imports, about 0.5 GiB: the 'start' phase); phases from a 20 ms "
            "RSS polling thread; budget = "
            f"{BUDGET_FACTOR} × the stage's input CSR size (data + indices + indptr)"
        ),
        "budget_factor": BUDGET_FACTOR,
        "stages": stages,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one memory-benchmark stage (internal)")
    parser.add_argument("--stage", choices=["preprocess", "preprocess_backed", "train"])
    parser.add_argument("paths", nargs="+", help="input [output] scale")
    args = parser.parse_args(argv)
    source, scale = Path(args.paths[0]), SIZES[args.paths[-1]]
    if args.stage == "preprocess":
        result = stage_preprocess(source, Path(args.paths[1]), scale)
    elif args.stage == "preprocess_backed":
        result = stage_preprocess_backed(source, scale)
    else:
        result = stage_train(source, scale)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
