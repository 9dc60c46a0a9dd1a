"""Benchmark 8: the scRNA → VEGA path through ``kedro run`` at a ladder of sizes.

Each size is a synthetic dataset with planted gene modules (``make_module_dataset``),
registered in a throw-away copy of the project (``conf/local/datasets.yml``, its modules as a
GMT gene-set collection) and run with
``kedro run --pipelines data_processing,vega --namespaces data_processing.<name>,vega.<name>``
(a few epochs). Per node: wall time (from its ``Running node`` log line to the next node's),
peak RSS of the kedro process while it ran (psutil, 50 ms polling) and, across the ladder,
the log-log slope of wall time and of peak RSS against the number of cells (1 = linear).

Covered so far: the scRNA kind only (data_processing, VEGA training, encoding, Bayes factors,
figures). ``make_module_dataset`` builds its counts densely, so the ladder stops where
cells × genes fit in memory; the issue's 200,000 × 20,000 needs a chunked generator first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.common import check_scale
from benchmarks.startup import DATA_LAYERS, PROJECT_ROOT, _environment
from genevae.preprocessing.synthetic import make_module_dataset

NAME = "scale"
NODE_LINE = re.compile(r"Running node: ([\w.]+)")


@dataclass(frozen=True)
class Ladder:
    cells: tuple[int, ...]
    n_genes: int
    n_modules: int
    epochs: int


LADDERS = {
    "full": Ladder((2_000, 4_000, 8_000), 2_000, 100, 1),
    "toy": Ladder((300, 600), 120, 8, 1),
}


def _project(root: Path) -> None:
    """pyproject + conf (no local layer) + empty data layers: a project kedro can run."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    for layer in DATA_LAYERS:
        (root / "data" / layer).mkdir(parents=True, exist_ok=True)


def _register(root: Path, name: str, n_cells: int, ladder: Ladder) -> None:
    """Write the synthetic cells and their module GMT; register them as dataset ``name``."""
    synthetic = make_module_dataset(
        n_cells=n_cells, n_genes=ladder.n_genes, n_modules=ladder.n_modules, seed=0
    )
    raw = root / "data" / "01_raw"
    adata = synthetic.adata
    adata.X = adata.layers.pop("counts")  # raw counts, as a user's file holds them
    adata.write_h5ad(raw / f"{name}.h5ad")
    gmt = "".join(
        f"{module}\tplanted\t" + "\t".join(genes) + "\n"
        for module, genes in synthetic.gene_sets.items()
    )
    (raw / f"{name}.gmt").write_text(gmt)
    entry = {
        "kind": "scrna",
        "file": f"data/01_raw/{name}.h5ad",
        "obs": {"condition": "condition", "cell_type": "cell_type", "batch": None},
        "gene_sets": [name],
        "comparisons": [{"groupby": "condition", "group1": "stimulated", "group2": "control"}],
        "gsea_comparison": None,
        "data_processing": {"scrna": {"min_genes": 10}},
        "vega": {
            "gene_module_collection": name,
            "analysis": {"plot_modules": list(synthetic.gene_sets)[:2]},
        },
    }
    config = {"datasets": {name: entry}, "gene_sets": {name: {"file": f"data/01_raw/{name}.gmt"}}}
    (root / "conf" / "local" / "datasets.yml").write_text(yaml.safe_dump(config))


def _kedro(name: str, epochs: int) -> list[str]:
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro)] if kedro.exists() else [sys.executable, "-m", "kedro"]
    return [
        *command,
        "run",
        "--pipelines",
        "data_processing,vega",
        "--namespaces",
        f"data_processing.{name},vega.{name}",
        "--params",
        f"vega.{name}.training.max_epochs={epochs}",
    ]


def run_once(root: Path, name: str, epochs: int) -> dict[str, dict[str, float]]:
    """One ``kedro run``; per node (namespace stripped) wall seconds and peak RSS bytes."""
    import psutil

    process = subprocess.Popen(
        _kedro(name, epochs),
        cwd=root,
        env=_environment(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    nodes: dict[str, dict[str, float]] = {}
    current: list[str | None] = [None]
    stop = threading.Event()

    def poll() -> None:
        child = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                rss = child.memory_info().rss
            except psutil.NoSuchProcess:
                return
            if current[0] is not None:
                entry = nodes[current[0]]
                entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], rss)
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    output, started = [], None
    for line in process.stdout:
        output.append(line)
        match = NODE_LINE.search(line)
        if match:
            now = time.perf_counter()
            _close(nodes, current[0], started, now)
            node = node_label(match.group(1), name)
            nodes[node] = {"wall_seconds": 0.0, "peak_rss_bytes": 0}
            current[0], started = node, now
    process.wait()
    _close(nodes, current[0], started, time.perf_counter())
    stop.set()
    poller.join()
    if process.returncode != 0:
        raise RuntimeError(f"kedro run failed ({process.returncode}):\n{''.join(output[-40:])}")
    return nodes


def node_label(node: str, name: str) -> str:
    """The node's name without the dataset's (namespace or suffix), the same at every size."""
    return re.sub(rf"(\.{name}\b|_{name}\b)", "", node)


def _close(nodes: dict, node: str | None, started: float | None, now: float) -> None:
    if node is not None and started is not None:
        nodes[node]["wall_seconds"] = now - started


def slopes(cells: list[int], runs: list[dict[str, dict[str, float]]]) -> dict[str, dict]:
    """Per node seen at every size: log-log slope of wall time and peak RSS against cells."""
    common = set.intersection(*(set(nodes) for nodes in runs))
    log_cells = np.log(cells)
    result = {}
    for node in sorted(common):
        entry = {}
        for key in ("wall_seconds", "peak_rss_bytes"):
            values = np.array([max(nodes[node][key], 1e-6) for nodes in runs])
            entry[f"{key}_slope"] = float(np.polyfit(log_cells, np.log(values), 1)[0])
        result[node] = entry
    return result


def run(scale: str = "full") -> dict[str, Any]:
    check_scale(scale)
    ladder = LADDERS[scale]
    runs = []
    with tempfile.TemporaryDirectory(prefix="genevae-scale-") as folder:
        root = Path(folder)
        _project(root)
        for index, n_cells in enumerate(ladder.cells):
            name = f"scale{index}"
            _register(root, name, n_cells, ladder)
            start = time.perf_counter()
            nodes = run_once(root, name, ladder.epochs)
            runs.append(
                {"n_cells": n_cells, "seconds": time.perf_counter() - start, "nodes": nodes}
            )
    return {
        "scale": scale,
        "ladder": ladder.__dict__,
        "method": (
            "one kedro run (data_processing + vega for one registered synthetic scRNA dataset) "
            "per size, sequentially; node wall time from its 'Running node' line to the next "
            "node's (or the end); peak RSS of the kedro process sampled every 50 ms while the "
            "node ran; slopes = least-squares log-log fit against cells over the ladder"
        ),
        "runs": runs,
        "slopes": slopes(list(ladder.cells), [r["nodes"] for r in runs]),
    }
