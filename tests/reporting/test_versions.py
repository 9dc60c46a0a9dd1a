from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.reporting.versions import main, mean_sd, newest_versions


def _save_versions(root, values: list[list[float]]):
    dataset = root / "comparison.parquet"
    for i, row in enumerate(values):
        folder = dataset / f"2026-11-22T00.0{i}.00.000Z"
        folder.mkdir(parents=True)
        table = pd.DataFrame({"r": row}, index=pd.Index(["model", "baseline"], name="predictor"))
        table.to_parquet(folder / "comparison.parquet")
    return dataset


def test_mean_and_sd_over_the_newest_versions(tmp_path):
    dataset = _save_versions(tmp_path, [[9.0, 9.0], [0.1, 0.5], [0.3, np.nan], [0.2, 0.7]])
    tables = newest_versions(dataset, last=3)
    assert list(tables) == [f"2026-11-22T00.0{i}.00.000Z" for i in (1, 2, 3)]
    summary = mean_sd(tables)
    assert summary.loc["model", "r"] == "0.200 ± 0.100"
    assert summary.loc["baseline", "r"] == "0.600 ± 0.141"  # the NaN version is skipped


def test_a_single_version_has_no_sd_and_all_nan_is_a_dash(tmp_path):
    dataset = _save_versions(tmp_path, [[0.25, np.nan]])
    summary = mean_sd(newest_versions(dataset, last=1))
    assert summary["r"].tolist() == ["0.250", "–"]


def test_asking_for_more_versions_than_saved_is_refused(tmp_path):
    dataset = _save_versions(tmp_path, [[0.1, 0.2]])
    with pytest.raises(GenevaeInputError, match="holds 1 saved version.*3 were asked"):
        newest_versions(dataset, last=3)


def test_versions_with_other_rows_are_refused(tmp_path):
    tables = {
        "a": pd.DataFrame({"r": [1.0]}, index=["model"]),
        "b": pd.DataFrame({"r": [1.0]}, index=["other"]),
    }
    with pytest.raises(GenevaeInputError, match="version b has other rows"):
        mean_sd(tables)


def test_cli_prints_a_markdown_table(tmp_path, capsys):
    dataset = _save_versions(tmp_path, [[0.1, 0.5], [0.3, 0.7]])
    main([str(dataset), "--last", "2", "--transpose"])
    out = capsys.readouterr().out
    assert "| predictor | model | baseline |" in out or "|  | model | baseline |" in out
    assert "| r | 0.200 ± 0.141 | 0.600 ± 0.141 |" in out
