"""Training-history figures: one panel per loss term, training against validation."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from genevae.errors import GenevaeInputError

HISTORY_COLUMNS = ("epoch", "split", "term", "value")
_SPLIT_STYLES = {"train": ("#1f77b4", "-"), "val": ("#d62728", "--")}


def training_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Loss curves from a long history table (epoch, split, term, value).

    Each term (``loss`` first, then the others in order of appearance) gets its own panel
    with one line per split, so over-fitting and the KL warm-up are visible side by side.
    Splits other than train/val are drawn too, in default colours. A boolean ``best`` column
    (from training) draws a dotted line at the epoch whose weights the model kept.
    """
    missing = [col for col in HISTORY_COLUMNS if col not in history.columns]
    if missing:
        raise GenevaeInputError(
            f"training history lacks column(s) {missing}; it needs {list(HISTORY_COLUMNS)} "
            "in long format (one row per epoch, split and term)."
        )
    if history.empty:
        raise GenevaeInputError("training history is empty; train for at least one epoch.")
    terms = list(dict.fromkeys(history["term"]))
    terms.sort(key=lambda term: term != "loss")
    fig = Figure(figsize=(3.6 * len(terms), 3.2), layout="constrained")
    axes = fig.subplots(1, len(terms), squeeze=False)[0]
    best = history.loc[history["best"], "epoch"].unique() if "best" in history.columns else []
    for ax, term in zip(axes, terms, strict=True):
        _draw_term(ax, history[history["term"] == term])
        for epoch in best:
            ax.axvline(epoch, color="grey", linestyle=":", label=f"kept weights (epoch {epoch})")
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.set_ylabel(term)
    axes[0].legend(frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _draw_term(ax, rows: pd.DataFrame) -> None:
    for split, split_rows in rows.groupby("split", sort=True):
        colour, style = _SPLIT_STYLES.get(split, (None, "-"))
        per_epoch = split_rows.groupby("epoch")["value"].mean()
        ax.plot(per_epoch.index, per_epoch.to_numpy(), style, color=colour, label=str(split))
