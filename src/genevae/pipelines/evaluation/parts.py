"""Small builders shared by the evaluation nodes: partial sections, figures, metric rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.reporting.sections import METRIC_COLUMNS, FigureBlock, ReportSection, TableBlock

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_DPI = 110


def metric_rows(
    table: pd.DataFrame,
    model: str,
    *,
    baselines: Iterable[str],
    headline: bool | np.ndarray | pd.Series,
) -> pd.DataFrame:
    """A method/family/metric/subset/value table in the report's long format."""
    rows = table.copy()
    rows.insert(0, "model", model)
    rows["is_baseline"] = rows["method"].isin(set(baselines))
    rows["headline"] = headline
    return rows[list(METRIC_COLUMNS)].reset_index(drop=True)


def section_part(
    *, tables: Sequence[TableBlock] = (), figures: Sequence[FigureBlock] = (), **fields: Any
) -> ReportSection:
    """A fragment of a section for ``assemble_section``: its tables, then its figures."""
    return ReportSection(key="part", title="part", blocks=[*tables, *figures], **fields)


def absent_part() -> ReportSection:
    """The part of a model that has not run (Kedro cannot pass ``None`` between nodes)."""
    return ReportSection(key="part", title="part", available=False)


def figure_block(title: str, figure: Figure, caption: str = "") -> FigureBlock:
    """A figure rendered to PNG at the report's resolution."""
    return FigureBlock.from_figure(title, figure, caption, dpi=FIGURE_DPI)
