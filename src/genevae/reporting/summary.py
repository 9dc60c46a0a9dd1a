"""The few lines a run ends with: what was found, where the report is, how to look further."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

RULE = "─" * 72


def format_duration(seconds: float) -> str:
    """``75.2`` → ``1 min 15 s``; under a minute ``4.2 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def run_summary(
    *,
    pipelines: Sequence[str],
    seconds: float,
    headlines: Sequence[str] = (),
    reports: Sequence[str] = (),
    mlflow_run_url: str | None = None,
    viz_url: str | None = None,
) -> str:
    """About ten lines framed by rules: headline results, report paths, the two web UIs."""
    lines = [RULE, f"genevae: {', '.join(pipelines)} finished in {format_duration(seconds)}."]
    lines += [f"  {line}" for line in headlines]
    lines += [f"  Report: {path}" for path in reports]
    if mlflow_run_url:
        lines.append(f"  MLflow run: `make mlflow-ui`, then open {mlflow_run_url}")
    if viz_url:
        lines.append(f"  Pipeline graph: `make viz`, then open {viz_url}")
    return "\n".join([*lines, RULE])


def top_modules_headline(bf_table: pd.DataFrame, n: int = 4, cap: float | None = None) -> list[str]:
    """The first comparison's ``n`` modules with the largest |ln BF|, one per line.

    ``cap`` is the saturation limit of ln BF; modules at it are marked as saturated. Further
    comparisons are only counted (they are in the report).
    """
    comparisons = list(dict.fromkeys(bf_table["comparison"]))
    table = bf_table[bf_table["comparison"] == comparisons[0]]
    top = rank_modules(table).head(n)
    width = max(len(_short_module(name)) for name in top["module"])
    lines = [f"Top modules by |ln BF|, {comparisons[0]}:"]
    for row in top.itertuples():
        saturated = cap is not None and abs(row.ln_bf) >= cap - 1e-6
        lines.append(
            f"  {_short_module(row.module):<{width}}  ln BF {row.ln_bf:+6.1f}"
            + ("  (saturated)" if saturated else "")
        )
    if len(comparisons) > 1:
        lines.append(f"({len(comparisons) - 1} more comparison(s) in the report)")
    return lines


def rank_modules(table: pd.DataFrame) -> pd.DataFrame:
    """Modules by |ln BF|, high first; ties (saturated ones) by |mean difference|."""
    keys = ["ln_bf", "mean_diff"] if "mean_diff" in table.columns else ["ln_bf"]
    order = table[keys].abs().sort_values(keys, ascending=False, kind="stable").index
    return table.loc[order]


def _short_module(name: str) -> str:
    return str(name).removeprefix("REACTOME_").removeprefix("HALLMARK_")
