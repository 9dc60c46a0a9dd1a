"""What a report must show of the vega pipeline's evidence: its own counts, rows and numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from tests.project import latest_version


def assert_page_shows_evidence(page: str, reporting: Path, n_top: int = 10) -> None:
    """``page`` (unescaped HTML) carries, from the saved tables in ``reporting``: each
    comparison's significant count, its top modules' ln BF, and the held-out reconstruction."""
    evidence = pd.read_parquet(latest_version(reporting / "vega_differential_evidence.parquet"))
    heldout = pd.read_parquet(latest_version(reporting / "vega_heldout_reconstruction.parquet"))
    for name, rows in evidence.groupby("comparison"):
        called = rows[rows["is_significant"]]
        assert f"{name}: {len(called)} of {len(rows)} modules significant" in page
        top = called.reindex(called["ln_bf"].abs().sort_values(ascending=False).index)
        for row in top.head(n_top).itertuples():
            pattern = rf"<td>{re.escape(row.module)}</td>\s*<td>{row.ln_bf:.3g}</td>"
            assert re.search(pattern, page), row.module
    means = heldout.groupby("kind")["validation_reconstruction"].mean()
    shown = f"real mask {means['real']:.4f}, random masks {means['random_mask']:.4f}"
    assert shown in page
