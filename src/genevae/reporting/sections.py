"""Report building blocks that survive a JSON round trip (sections are saved between runs).

A :class:`ReportSection` is what one part of the evaluation (one model, one experiment)
contributes to the report: a summary, caveats, tables and figures (PNG, base64) in reading
order, the long table of metrics behind them and the lineage of its inputs (dataset
versions, MLflow runs).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError

if TYPE_CHECKING:  # figures arrive ready-made; only their type is named here
    from matplotlib.figure import Figure

METRIC_COLUMNS = (
    "model",
    "method",
    "is_baseline",
    "family",
    "metric",
    "subset",
    "value",
    "headline",
)
"""Columns of the long metrics table every section carries (one row per score); ``headline``
rows make the cross-model overview."""


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def frame_to_dict(frame: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as ``{"columns": [...], "data": [[...], ...]}`` with NaN → null."""
    flat = frame.reset_index() if _has_named_index(frame) else frame.reset_index(drop=True)
    return {
        "columns": [str(column) for column in flat.columns],
        "data": [[_json_value(v) for v in row] for row in flat.itertuples(index=False)],
    }


def _has_named_index(frame: pd.DataFrame) -> bool:
    return any(name is not None for name in frame.index.names)


def frame_from_dict(payload: dict[str, Any]) -> pd.DataFrame:
    """Inverse of :func:`frame_to_dict` (nulls come back as NaN/None)."""
    return pd.DataFrame(payload["data"], columns=payload["columns"])


def figure_to_base64(figure: Figure, dpi: int = 110) -> str:
    """PNG bytes of a matplotlib Figure, base64-encoded for an ``<img src="data:...">``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _typed_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Restore the metric table's dtypes after JSON (nulls → NaN, flags → bool)."""
    return metrics.astype({"is_baseline": bool, "headline": bool}).assign(
        value=pd.to_numeric(metrics["value"], errors="coerce")
    )


@dataclass
class TableBlock:
    """A titled table; ``max_rows`` limits what the HTML shows (the data stay complete) and
    ``collapsed`` folds it away (click to open), e.g. for long parameter lists."""

    title: str
    table: pd.DataFrame
    caption: str = ""
    max_rows: int | None = 40
    collapsed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "table",
            "title": self.title,
            "caption": self.caption,
            "max_rows": self.max_rows,
            "collapsed": self.collapsed,
            "table": frame_to_dict(self.table),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TableBlock:
        return cls(
            payload["title"],
            frame_from_dict(payload["table"]),
            payload.get("caption", ""),
            payload.get("max_rows"),
            payload.get("collapsed", False),
        )


@dataclass
class FigureBlock:
    """A titled figure stored as base64 PNG."""

    title: str
    png_base64: str
    caption: str = ""

    @classmethod
    def from_figure(cls, title: str, figure: Figure, caption: str = "", dpi: int = 110):
        return cls(title, figure_to_base64(figure, dpi), caption)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "figure",
            "title": self.title,
            "caption": self.caption,
            "png_base64": self.png_base64,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> FigureBlock:
        return cls(payload["title"], payload["png_base64"], payload.get("caption", ""))


Block = TableBlock | FigureBlock


def _block_from_dict(payload: dict[str, Any]) -> Block:
    if payload.get("kind") == "figure":
        return FigureBlock.from_dict(payload)
    return TableBlock.from_dict(payload)


@dataclass
class ReportSection:
    """One part of the report. ``available=False`` marks a model that has not run yet.

    ``blocks`` (tables and figures) are shown in order; ``computed_at`` and ``run`` say when
    and by which MLflow run the section was computed (sections can come from earlier runs).
    """

    key: str
    title: str
    summary: str = ""
    available: bool = True
    notes: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS))
    lineage: list[dict[str, Any]] = field(default_factory=list)
    computed_at: str = ""
    run: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        missing = [c for c in METRIC_COLUMNS if c not in self.metrics.columns]
        if missing:
            raise GenevaeInputError(
                f"Section {self.key!r}: metrics table lacks columns {missing}; it needs "
                f"{list(METRIC_COLUMNS)}."
            )

    def extend(self, other: ReportSection) -> None:
        """Append another part's summary paragraphs, notes, blocks and metrics."""
        self.summary = "\n\n".join(text for text in (self.summary, other.summary) if text)
        self.notes += other.notes
        self.blocks += other.blocks
        frames = [frame for frame in (self.metrics, other.metrics) if not frame.empty]
        if frames:
            self.metrics = pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "summary": self.summary,
            "available": self.available,
            "notes": list(self.notes),
            "blocks": [block.to_dict() for block in self.blocks],
            "metrics": frame_to_dict(self.metrics),
            "lineage": [{k: _json_value(v) for k, v in row.items()} for row in self.lineage],
            "computed_at": self.computed_at,
            "run": self.run,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ReportSection:
        return cls(
            key=payload["key"],
            title=payload["title"],
            summary=payload.get("summary", ""),
            available=payload.get("available", True),
            notes=list(payload.get("notes", [])),
            blocks=[_block_from_dict(b) for b in payload.get("blocks", [])],
            metrics=_typed_metrics(frame_from_dict(payload["metrics"])),
            lineage=list(payload.get("lineage", [])),
            computed_at=payload.get("computed_at", ""),
            run=payload.get("run"),
        )
