"""Run the benchmarks and write ``benchmarks/results/<name>.json``; ``make bench`` calls this.

    python -m benchmarks.run_all                      # everything at full size (< 15 min)
    python -m benchmarks.run_all --only vega_vs_scvi  # one benchmark (repeat --only for more)
    python -m benchmarks.run_all --scale toy          # seconds-long smoke run of everything

Each benchmark's JSON holds its measurements, targets and the machine's state (threads,
load average); a summary table is printed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    bayes_factors,
    flop_floor,
    memory,
    scale,
    startup,
    streaming,
    vega_small_data,
    vega_vs_scvi,
)
from benchmarks.common import SCALES, write_result

BENCHMARKS: dict[str, Callable[[str], dict[str, Any]]] = {
    flop_floor.NAME: flop_floor.run,
    vega_vs_scvi.NAME: vega_vs_scvi.run,
    bayes_factors.NAME: bayes_factors.run,
    memory.NAME: memory.run,
    startup.NAME: startup.run,
    streaming.NAME: streaming.run,
    scale.NAME: scale.run,
    vega_small_data.NAME: vega_small_data.run,
}


def summary_rows(name: str, result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(benchmark, measure, value, target) rows for the printed table."""
    if "error" in result:
        return [(name, "error", result["error"].splitlines()[-1][:60], "")]
    if name == flop_floor.NAME:
        return [
            (
                name,
                f"{model}: epoch ÷ FLOP floor (bare loop; probe GFLOP/s)",
                f"{r['ratio_to_floor']:.2f} ({r['bare_loop_ratio_to_floor']:.2f}; "
                f"{r['matmul_gflops']:.0f})",
                "≤ 1.5",
            )
            for model, r in result["models"].items()
        ]
    if name == vega_vs_scvi.NAME:
        if not result.get("scvi_available"):
            return [(name, "scvi-tools", "not installed", "")]
        error_ratio = result["reconstruction_error_ratio_genevae_over_scvi"]
        return [
            (name, "scvi epoch ÷ genevae epoch", f"{result['speedup_median']:.2f}", "≥ 3"),
            (name, "recon. error genevae ÷ scvi", f"{error_ratio:.3f}", "≤ 1"),
        ]
    if name == bayes_factors.NAME:
        return [
            (
                name,
                "seconds (5k/group, 10k pairs)",
                f"{result['library_seconds_median']:.2f}",
                "< 2",
            ),
            (name, "speed-up vs per-module loop", f"{result['speedup_vs_reference']:.1f}", ""),
            (name, "÷ encoding floor (all draws)", f"{result['ratio_to_encoding_floor']:.2f}", ""),
            (
                name,
                "÷ encoding floor (distinct cells)",
                f"{result['ratio_to_distinct_encoding_floor']:.2f}",
                "",
            ),
        ]
    if name == memory.NAME:
        return [
            (name, f"{stage}: peak RSS ÷ sparse size", f"{r['peak_over_sparse_size']:.2f}", "< 3")
            for stage, r in result["stages"].items()
        ]
    if name == streaming.NAME:
        ratio = f"{result['ratio_disk_over_memory']:.2f}"
        return [(name, "train cells/s: disk ÷ memory", ratio, "≥ 0.7")]
    if name == scale.NAME:
        return [scale.summary_row(kind, ladder) for kind, ladder in result["ladders"].items()]
    if name == startup.NAME:
        if "skipped" in result:
            return [(name, "skipped", result["skipped"], "")]
        cpu = statistics.median(result["warm_cpu_seconds_to_running_node"])
        return [
            (
                name,
                "wall s to 'Running node'",
                f"{result['median_seconds_to_running_node']:.1f}",
                "< 5",
            ),
            (name, "CPU s to 'Running node'", f"{cpu:.1f}", ""),
            (name, "÷ `import torch` alone", f"{result['ratio_to_import_torch']:.1f}", ""),
        ]
    if name == vega_small_data.NAME:
        defaults = result["summary"]["defaults"]
        return [
            (name, "interferon module first", defaults["interferon_family_first"], "5/5"),
            (
                name,
                "IFN α/β rank ≤ module score's",
                defaults["ifn_rank_no_worse_than_module_score"],
                "5/5",
            ),
        ]
    return []


def run(names: list[str], scale: str, results_dir: Path | None = None) -> dict[str, Any]:
    """Run ``names`` in order, writing each JSON as soon as it is done."""
    results: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        print(f"[bench] {name} ({scale}) ...", flush=True)
        try:
            result = BENCHMARKS[name](scale)
        except Exception:
            result = {"scale": scale, "error": traceback.format_exc()}
        result["benchmark_seconds"] = round(time.perf_counter() - start, 1)
        path = write_result(name, result, results_dir)
        print(f"[bench] {name} done in {result['benchmark_seconds']} s -> {path}", flush=True)
        results[name] = result
    return results


def format_table(results: dict[str, Any]) -> str:
    rows = [("benchmark", "measure", "value", "target")]
    for name, result in results.items():
        rows += summary_rows(name, result)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only this")
    parser.add_argument("--scale", choices=SCALES, default="full")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    results = run(names, args.scale, args.results_dir)
    print(format_table(results))
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
