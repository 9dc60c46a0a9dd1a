"""Tables that explain gene modules: which genes carry each module's decoder weight."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError


def top_module_genes(
    weights: pd.DataFrame, n: int = 10, *, by_absolute: bool = False
) -> pd.DataFrame:
    """The ``n`` genes with the largest decoder weight in every module.

    Args:
        weights: genes × modules decoder weights (index = gene names, columns = modules),
            e.g. ``pd.DataFrame(model.decoder_weights(), index=var_names, columns=modules)``.
        n: genes per module; modules with fewer connected genes list them all.
        by_absolute: rank by |weight| (for decoders not constrained to be non-negative).

    Returns:
        Long table with columns module, rank (1 = top), gene, weight. Genes with exactly zero
        weight (outside the module's mask) are never listed.
    """
    if n < 1:
        raise GenevaeInputError(f"n must be at least 1, got {n}")
    if weights.empty:
        raise GenevaeInputError("weights is empty; pass a genes × modules DataFrame.")
    values = weights.to_numpy(dtype=float)
    keys = np.abs(values) if by_absolute else values
    order = np.argsort(-keys, axis=0, kind="stable")[:n]
    rows = []
    for column, module in enumerate(weights.columns):
        picked = order[:, column]
        picked = picked[values[picked, column] != 0]
        rows.append(
            pd.DataFrame(
                {
                    "module": module,
                    "rank": np.arange(1, len(picked) + 1),
                    "gene": weights.index[picked],
                    "weight": values[picked, column],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
