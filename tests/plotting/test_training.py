"""Training curves: one panel per loss term, train against validation, refusing other layouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genevae.errors import GenevaeInputError
from genevae.plotting.training import training_curves


def _history() -> pd.DataFrame:
    rows = []
    for epoch in range(5):
        for split, shift in (("train", 0.0), ("val", 2.0)):
            rows += [
                {"epoch": epoch, "split": split, "term": "reconstruction", "value": 100 - epoch},
                {"epoch": epoch, "split": split, "term": "loss", "value": 110 - epoch + shift},
                {"epoch": epoch, "split": split, "term": "kl", "value": 5.0 + shift},
            ]
    rows += [{"epoch": e, "split": "train", "term": "beta", "value": min(1, e)} for e in range(5)]
    return pd.DataFrame(rows)


def test_training_curves_one_panel_per_term_with_train_and_val():
    fig = training_curves(_history(), title="Tybalt")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "reconstruction", "kl", "beta"]
    loss_ax = fig.axes[0]
    assert loss_ax.get_xlabel() == "epoch" and loss_ax.get_ylabel() == "loss"
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert set(lines) == {"train", "val"}
    np.testing.assert_allclose(lines["val"].get_ydata(), [112, 111, 110, 109, 108])
    np.testing.assert_allclose(lines["train"].get_xdata(), range(5))
    assert [line.get_label() for line in fig.axes[3].get_lines()] == ["train"]


def test_training_curves_mark_the_epoch_whose_weights_were_kept():
    history = _history().assign(best=lambda table: table["epoch"] == 3)
    loss_ax = training_curves(history).axes[0]
    [marker] = [line for line in loss_ax.get_lines() if line.get_label().startswith("kept")]
    assert marker.get_label() == "kept weights (epoch 3)"
    np.testing.assert_array_equal(marker.get_xdata(), [3, 3])
    assert not any(
        line.get_label().startswith("kept")
        for line in training_curves(_history()).axes[0].get_lines()
    )


def test_training_curves_refuses_wrong_layout():
    with pytest.raises(GenevaeInputError, match=r"lacks column\(s\) \['split'\]"):
        training_curves(_history().drop(columns="split"))
    with pytest.raises(GenevaeInputError, match="empty"):
        training_curves(_history().iloc[:0])
