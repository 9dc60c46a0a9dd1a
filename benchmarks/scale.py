"""Benchmark 8: whole pipelines through ``kedro run`` at a ladder of sizes, per dataset kind.

For each dataset *kind* (scRNA, Perturb-seq, bulk, ...) and each size of its ladder, a
synthetic dataset with planted truth is written into a throw-away copy of the project and
registered in its ``conf/local/datasets.yml``; one ``kedro run`` then runs the kind's
pipelines for it. Per node: wall time (from its ``Running node`` log line to the next node's;
the last node's includes kedro's shut-down), peak RSS of the kedro process while it ran
(psutil, 50 ms polling) and, across the ladder, the log-log slope of wall time and of peak
RSS against the number of cells (1 = linear).

Adding a kind is one module that defines ``KIND = Kind(...)`` and one line in ``KIND_MODULES``.
A :class:`Kind` holds:

- ``name``: the key of its results (``ladders.<name>`` in ``scale.json``);
- ``ladders``: a :class:`Ladder` per scale, ``full`` (1/8, 1/2 and all of the issue's cells)
  and ``toy`` (seconds, for the smoke test); ``Ladder.sizes`` holds the kind's other
  dimensions (genes, modules, perturbations ...), read only by the kind's own functions;
- ``register(root, name, n_cells, ladder) -> dict``: writes the synthetic files under
  ``root/data/01_raw`` and returns the registry blocks (``{"datasets": {name: ...},
  "gene_sets": ...}``) that this framework writes to ``conf/local/datasets.yml``; an optional
  ``"facts"`` key (e.g. the matrix's nonzeros and in-memory bytes) is kept with the run
  instead (``runs[i].data``);
- ``pipelines``: what ``kedro run --pipelines`` gets; ``namespaces(name)`` what
  ``--namespaces`` gets (default: ``<pipeline>.<name>`` for each pipeline);
- ``params(name, ladder) -> dict``: ``--params`` overrides (e.g. the number of epochs).

``python -m benchmarks.scale --kind scrna --scale full`` runs one kind and merges its ladder
into ``benchmarks/results/scale.json`` (other kinds' ladders are kept);
``python -m benchmarks.run_all --only scale`` runs every kind.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.common import RESULTS_DIR, SCALES, check_scale, machine_info, write_result
from benchmarks.startup import _environment, project_skeleton

NAME = "scale"
NODE_LINE = re.compile(r"Running node: ([\w.]+)")
KIND_MODULES = {
    "scrna": "benchmarks.scale_scrna",
    "perturbseq": "benchmarks.scale_perturbseq",
    "bulk": "benchmarks.scale_bulk",
}
METHOD = (
    "one kedro run per size (the kind's pipelines for one registered synthetic dataset), "
    "sequentially; node wall time from its 'Running node' line to the next node's (or the "
    "end); peak RSS of the kedro process sampled every 50 ms while the node ran; slopes = "
    "least-squares log-log fit against cells over the ladder"
)


@dataclass(frozen=True)
class Ladder:
    """Cells per size, training epochs, and the kind's other dimensions (``sizes``)."""

    cells: tuple[int, ...]
    epochs: int
    sizes: Mapping[str, Any] = field(default_factory=dict)


def dataset_namespaces(pipelines: tuple[str, ...]) -> Callable[[str], list[str]]:
    """The per-dataset namespaces ``<pipeline>.<name>`` (the model pipelines' templates)."""
    return lambda name: [f"{pipeline}.{name}" for pipeline in pipelines]


@dataclass(frozen=True)
class Kind:
    """One dataset kind's ladder, data writer and pipelines (see the module docstring)."""

    name: str
    ladders: Mapping[str, Ladder]
    register: Callable[[Path, str, int, Ladder], dict[str, Any]]
    pipelines: tuple[str, ...]
    params: Callable[[str, Ladder], dict[str, Any]]
    namespaces: Callable[[str], list[str]] | None = None

    def command(self, name: str, ladder: Ladder) -> list[str]:
        """``kedro run`` with this kind's pipelines, namespaces and parameters for ``name``."""
        namespaces = (self.namespaces or dataset_namespaces(self.pipelines))(name)
        params = ",".join(f"{key}={value}" for key, value in self.params(name, ladder).items())
        kedro = Path(sys.executable).with_name("kedro")
        command = [str(kedro)] if kedro.exists() else [sys.executable, "-m", "kedro"]
        command += ["run", "--pipelines", ",".join(self.pipelines)]
        command += ["--namespaces", ",".join(namespaces)]
        return command + (["--params", params] if params else [])


def kind(name: str) -> Kind:
    """The registered kind ``name`` (its module is imported on demand)."""
    if name not in KIND_MODULES:
        raise ValueError(f"kind must be one of {sorted(KIND_MODULES)}, got {name!r}")
    return importlib.import_module(KIND_MODULES[name]).KIND


def make_project(root: Path) -> None:
    """pyproject + conf (no local layer) + empty data layers: a project kedro can run.

    Its logging shows Kedro's ``Running node`` lines (the project keeps them at DEBUG), which
    time the nodes.
    """
    project_skeleton(root)
    logging_file = root / "conf" / "logging.yml"
    logging_config = yaml.safe_load(logging_file.read_text())
    logging_config["loggers"]["kedro.pipeline.node"] = {"level": "INFO"}
    logging_file.write_text(yaml.safe_dump(logging_config))


def write_gmt(path: Path, gene_sets: Mapping[str, list[str]], source: str = "planted") -> None:
    """Gene sets as a GMT file (name, description, genes; one set per line)."""
    with path.open("w") as handle:
        for module, genes in gene_sets.items():
            handle.write(f"{module}\t{source}\t" + "\t".join(genes) + "\n")


def run_once(root: Path, command: list[str], name: str) -> dict[str, dict[str, float]]:
    """One ``kedro run``; per node (dataset name stripped) wall seconds, peak RSS bytes and
    CPU seconds of the kedro process (user + system, sampled with the RSS: on a loaded
    machine the CPU time grows with the work, the wall time also with the load)."""
    import psutil

    process = subprocess.Popen(
        command,
        cwd=root,
        env=_environment(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    nodes: dict[str, dict[str, float]] = {}
    current: list[str | None] = [None]
    stop = threading.Event()

    cpu_at_start: dict[str, float] = {}

    def poll() -> None:
        child = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                rss = child.memory_info().rss
                cpu = sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                return
            node = current[0]
            if node is not None:
                entry = nodes[node]
                entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], rss)
                entry["cpu_seconds"] = cpu - cpu_at_start.setdefault(node, cpu)
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
            nodes[node] = {"wall_seconds": 0.0, "peak_rss_bytes": 0, "cpu_seconds": 0.0}
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
    """Per node seen at every size: log-log slope of wall time, peak RSS (and CPU seconds,
    where every size has them) against cells."""
    common = set.intersection(*(set(nodes) for nodes in runs))
    log_cells = np.log(cells)
    result = {}
    for node in sorted(common):
        entry = {}
        measured = set.intersection(*(set(nodes[node]) for nodes in runs))
        for key in [k for k in ("wall_seconds", "peak_rss_bytes", "cpu_seconds") if k in measured]:
            values = np.array([max(nodes[node][key], 1e-6) for nodes in runs])
            entry[f"{key}_slope"] = float(np.polyfit(log_cells, np.log(values), 1)[0])
        result[node] = entry
    return result


def summary_row(kind_name: str, ladder: dict[str, Any]) -> tuple[str, str, str, str]:
    """(benchmark, measure, value, target): the node growing fastest in cells (CPU time where
    measured, which the load does not inflate; else wall time), or the error."""
    if "slopes" not in ladder:
        return (NAME, f"{kind_name}: error", ladder.get("error", "fewer than 2 sizes")[:60], "")
    slopes_ = ladder["slopes"]
    key = "cpu_seconds_slope"
    if not all(key in entry for entry in slopes_.values()):
        key = "wall_seconds_slope"
    node, entry = max(slopes_.items(), key=lambda item: item[1][key])
    measure = "CPU" if key.startswith("cpu") else "wall"
    return (
        NAME,
        f"{kind_name}: steepest node ({measure}): {node}",
        f"{entry[key]:.2f}",
        "≤ method's",
    )


def run_ladder(
    kind_: Kind,
    scale: str,
    on_size: Callable[[dict[str, Any]], None] | None = None,
    cells: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Every size of ``kind_``'s ladder, each in a fresh throw-away project; then the slopes.

    Runs that completed are kept when a later (larger) size fails: its error is recorded.
    ``on_size`` gets the ladder so far after each size (to save a long ladder as it goes);
    ``cells`` replaces the ladder's sizes (its other dimensions stay).
    """
    check_scale(scale)
    ladder = kind_.ladders[scale]
    if cells:
        ladder = replace(ladder, cells=tuple(cells))
    runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {"ladder": asdict(ladder), "method": METHOD, "runs": runs}
    result["machine_at_start"] = machine_info()
    for index, n_cells in enumerate(ladder.cells):
        name = f"{kind_.name}{index}"
        with tempfile.TemporaryDirectory(prefix=f"genevae-scale-{kind_.name}-") as folder:
            root = Path(folder)
            make_project(root)
            start = time.perf_counter()
            config = kind_.register(root, name, n_cells, ladder)
            facts = config.pop("facts", {})
            (root / "conf" / "local" / "datasets.yml").write_text(yaml.safe_dump(config))
            prepared = time.perf_counter()
            try:
                nodes = run_once(root, kind_.command(name, ladder), name)
            except RuntimeError as error:
                result["error"] = f"{n_cells} cells: {error}"
                break
            runs.append(
                {
                    "n_cells": n_cells,
                    "data": facts,
                    "data_seconds": prepared - start,
                    "seconds": time.perf_counter() - prepared,
                    "nodes": nodes,
                }
            )
        result["machine_at_end"] = machine_info()
        if len(runs) >= 2:
            result["slopes"] = slopes([r["n_cells"] for r in runs], [r["nodes"] for r in runs])
        if on_size is not None:
            on_size(result)
    return result


def run(
    scale: str = "full",
    kinds: list[str] | None = None,
    results_dir: Path | None = None,
    cells: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """The ladders of ``kinds`` (all registered kinds by default) at ``scale``.

    With ``results_dir``, each ladder is merged into its ``scale.json`` after every size.
    """
    ladders: dict[str, Any] = {}
    for name in kinds or list(KIND_MODULES):

        def save(ladder: dict[str, Any], name: str = name) -> None:
            if results_dir is not None:
                path = Path(results_dir) / f"{NAME}.json"
                merged = merge_into(path, {"scale": scale, "ladders": {name: ladder}})
                write_result(NAME, {k: v for k, v in merged.items() if k not in _OWN}, results_dir)

        ladders[name] = run_ladder(kind(name), scale, save, cells)
    return {"scale": scale, "ladders": ladders}


_OWN = ("benchmark", "machine")  # keys write_result adds itself


def merge_into(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """``result``'s ladders merged over those already in ``path`` (other kinds are kept)."""
    if not path.exists():
        return result
    previous = json.loads(path.read_text())
    ladders = {**previous.get("ladders", {}), **result["ladders"]}
    return {**result, "ladders": ladders}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--kind", action="append", choices=sorted(KIND_MODULES))
    parser.add_argument("--scale", choices=SCALES, default="full")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--cells", type=int, nargs="+", help="sizes instead of the ladder's")
    args = parser.parse_args(argv)
    result = run(args.scale, args.kind, args.results_dir, args.cells)
    print(Path(args.results_dir) / f"{NAME}.json")
    return 1 if any("error" in ladder for ladder in result["ladders"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
