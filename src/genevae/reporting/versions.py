"""Mean ± SD of a versioned table over its newest saved versions (e.g. runs with other seeds).

Kedro writes every run of a versioned parquet dataset to ``<name>.parquet/<version>/<name>.parquet``.
Re-running a pipeline with ``--params "<model>.training.seed=N"`` therefore leaves one version per
seed, and this module summarises them cell by cell::

    python -m genevae.reporting.versions data/08_reporting/adamson/gpo_vae_comparison.parquet --last 3

prints a markdown table (rows: the table's rows, here predictors) of "mean ± SD" per column,
with the versions it read. ``--transpose`` puts the columns (metrics) down the side.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError
from genevae.reporting.markdown import markdown_table


def newest_versions(dataset: Path, last: int) -> dict[str, pd.DataFrame]:
    """The ``last`` newest versions of a versioned parquet dataset folder, oldest first."""
    if last < 1:
        raise GenevaeInputError(f"last={last} must be at least 1.")
    files = sorted(dataset.glob(f"*/{dataset.name}"))
    if len(files) < last:
        raise GenevaeInputError(
            f"{dataset} holds {len(files)} saved version(s); {last} were asked for. "
            "Run the pipeline again (e.g. with another seed) or ask for fewer."
        )
    return {path.parent.name: pd.read_parquet(path) for path in files[-last:]}


def mean_sd(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Cell-wise 'mean ± SD' of same-shaped numeric tables (just the mean where SD is undefined).

    Cells that are NaN in some versions are summarised over the others; all-NaN stay NaN.
    """
    frames = list(tables.values())
    first = frames[0]
    for name, frame in tables.items():
        if not (frame.index.equals(first.index) and frame.columns.equals(first.columns)):
            raise GenevaeInputError(f"version {name} has other rows or columns than the first.")
    values = np.stack([frame.to_numpy(dtype=float) for frame in frames])
    with warnings.catch_warnings():  # all-NaN cells: "mean of empty slice", NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values, axis=0)
        sds = np.nanstd(values, axis=0, ddof=1) if len(frames) > 1 else np.full_like(means, np.nan)
    cells = np.vectorize(_format)(means, sds)
    return pd.DataFrame(cells, index=first.index, columns=first.columns)


def _format(mean: float, sd: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.3f}" if np.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a versioned .parquet folder")
    parser.add_argument("--last", type=int, default=3, help="how many newest versions")
    parser.add_argument("--transpose", action="store_true", help="columns down the side")
    args = parser.parse_args(argv)
    tables = newest_versions(args.dataset, args.last)
    summary = mean_sd(tables)
    if args.transpose:
        summary = summary.T
    print(f"{args.dataset.name}: mean ± SD over versions {', '.join(tables)}\n")
    print(markdown_table(summary.rename_axis(summary.index.name or "").reset_index()))


if __name__ == "__main__":
    main()
