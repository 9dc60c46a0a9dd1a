"""Synthetic TCGA-like bulk expression with planted cancer-type programs, for tests and demos."""

from __future__ import annotations

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError

# TCGA study abbreviations used as type labels, so the TCGA colour table works as a palette.
TCGA_LIKE_TYPES = ("BRCA", "GBM", "LUAD", "SKCM", "OV", "KIRC", "PRAD", "THCA", "COAD", "LAML")


def make_tcga_like(
    n_samples: int = 500, n_genes: int = 200, n_types: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series]:
    """Samples × genes in [0, 1] (min-max per gene, as Tybalt's input) and cancer-type labels.

    Each type switches on its own block of ``n_genes // (2 * n_types)`` program genes (the
    planted truth, listed in ``expression.attrs["type_programs"]``), so half of the genes are
    type-specific. Every gene also carries a shared three-factor signal unrelated to type and
    independent noise, so the types are separable but not trivially so.
    """
    if n_types < 2 or n_types > len(TCGA_LIKE_TYPES):
        raise GenevaeInputError(f"n_types must be in 2..{len(TCGA_LIKE_TYPES)}; got {n_types}.")
    program_size = n_genes // (2 * n_types)
    if program_size < 1 or n_samples < 2 * n_types:
        raise GenevaeInputError(
            f"make_tcga_like needs n_genes >= {2 * n_types} and n_samples >= {2 * n_types} for "
            f"n_types={n_types}; got n_genes={n_genes}, n_samples={n_samples}."
        )
    rng = np.random.default_rng(seed)
    types = np.array(TCGA_LIKE_TYPES[:n_types])
    label_codes = rng.permutation(np.arange(n_samples) % n_types)

    log_expression = rng.normal(6.0, 1.5, size=n_genes) + rng.normal(0, 0.6, (n_samples, n_genes))
    shared_factors = rng.normal(size=(n_samples, 3)) @ rng.normal(0, 0.5, (3, n_genes))
    log_expression += shared_factors
    genes = np.array([f"gene_{i:04d}" for i in range(n_genes)])
    programs: dict[str, list[str]] = {}
    for code, name in enumerate(types):
        block = slice(code * program_size, (code + 1) * program_size)
        log_expression[label_codes == code, block] += rng.uniform(2.0, 4.0, program_size)
        programs[name] = genes[block].tolist()

    low, high = log_expression.min(0), log_expression.max(0)
    scaled = (log_expression - low) / np.where(high > low, high - low, 1.0)
    index = pd.Index([f"sample_{i:04d}" for i in range(n_samples)], name="sample")
    expression = pd.DataFrame(scaled, index=index, columns=pd.Index(genes, name="gene"))
    expression.attrs["type_programs"] = programs
    labels = pd.Series(types[label_codes], index=index, name="cancer_type")
    return expression, labels
