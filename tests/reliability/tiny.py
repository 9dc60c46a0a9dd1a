"""A tiny VEGA on planted synthetic modules, shared by the reliability tests and their scripts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genevae.models.vega import VEGA
from genevae.preprocessing.genesets import build_gene_module_mask
from genevae.preprocessing.synthetic import SyntheticModules, make_module_dataset


def tiny_modules(seed: int = 0) -> SyntheticModules:
    """200 cells × 60 genes, 6 modules of which 2 are up in stimulated cells."""
    return make_module_dataset(
        n_cells=200, n_genes=60, n_modules=6, n_differential=2, genes_per_module=(5, 12), seed=seed
    )


def tiny_mask(synthetic: SyntheticModules) -> pd.DataFrame:
    """Genes × modules mask (plus one unannotated node) on the synthetic genes."""
    genes = list(synthetic.adata.var_names)
    result = build_gene_module_mask(genes, synthetic.gene_sets)
    return pd.DataFrame(result.mask, index=genes, columns=result.module_names)


def tiny_vega(mask: pd.DataFrame, model_class: type[VEGA] = VEGA, **config) -> VEGA:
    """A VEGA small enough to train in well under a second per epoch on one CPU thread."""
    return model_class(
        n_genes=mask.shape[0],
        n_modules=mask.shape[1],
        mask=mask.to_numpy(dtype=np.float32),
        **{"hidden": 16, **config},
    )
