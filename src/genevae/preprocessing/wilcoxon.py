"""Wilcoxon rank-sum tests of every group against one reference group, linear in cells.

scanpy's ``rank_genes_groups(method="wilcoxon", reference=...)`` ranks the union of each
group and the reference from scratch, so a screen pays (groups × reference cells × genes):
with the groups and the controls both growing with the screen, that is quadratic in cells
(62 perturbations of 12,400 cells: 30 s of ranking). The rank sum needs far less. A group
value x has union rank (its rank within the group) + #(reference < x) + #(reference = x)/2,
and the within-group ranks of a group of n cells always sum to n(n + 1)/2. So each gene's
reference values are sorted once, every cell's value is looked up in them, and the group
sums come from one bincount over the matrix's nonzeros (zeros share one value per gene).
The statistics then follow scanpy's code (no tie correction, its default; normal
approximation; Benjamini-Hochberg per group; log fold change of the ``expm1`` means).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from genevae.errors import GenevaeInputError

COLUMNS = ("group", "names", "scores", "logfoldchanges", "pvals", "pvals_adj")


def _half_ranks(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """#(reference < v) + #(reference = v)/2 for each value v."""
    below = np.searchsorted(sorted_reference, values, side="left")
    tied = np.searchsorted(sorted_reference, values, side="right") - below
    return below + 0.5 * tied


def reference_rank_sums(
    matrix: sp.spmatrix | np.ndarray, codes: np.ndarray, reference: int, n_groups: int
) -> np.ndarray:
    """Per group (rows) and gene, the sum over its cells of #(reference < x) + #(ref = x)/2.

    ``codes`` gives each cell's group (0 … n_groups − 1), ``reference`` the reference's code.
    Adding n(n + 1)/2 gives a group's rank sum in the union with the reference.
    """
    columns = sp.csc_matrix(matrix, dtype=np.float64)
    is_reference = codes == reference
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    reference_columns = sp.csc_matrix(columns[is_reference])
    sums = np.empty((n_groups, columns.shape[1]))
    for gene in range(columns.shape[1]):
        sorted_reference = np.sort(reference_columns[:, gene].toarray().ravel())
        zero = _half_ranks(sorted_reference, np.zeros(1))[0]
        start, stop = columns.indptr[gene], columns.indptr[gene + 1]
        excess = _half_ranks(sorted_reference, columns.data[start:stop]) - zero
        rows = columns.indices[start:stop]
        sums[:, gene] = sizes * zero + np.bincount(codes[rows], excess, minlength=n_groups)
    return sums


def _group_means(matrix: sp.spmatrix | np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    indicator = sp.csr_matrix(
        (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_groups, codes.size)
    )
    sums = indicator @ sp.csr_matrix(matrix, dtype=np.float64)
    return sums.toarray() / np.bincount(codes, minlength=n_groups)[:, None]


def _top(scores: np.ndarray, n_genes: int | None, rank_by_abs: bool) -> np.ndarray:
    """Gene order of one group: highest (|)score(|) first, ties in gene order."""
    key = np.abs(scores) if rank_by_abs else scores
    order = np.argsort(-key, kind="stable")
    return order if n_genes is None else order[:n_genes]


def rank_genes_vs_reference(
    matrix: sp.spmatrix | np.ndarray,
    labels: Sequence[str],
    reference: str,
    gene_names: Sequence[str],
    n_genes: int | None = None,
    rank_by_abs: bool = False,
) -> pd.DataFrame:
    """scanpy's Wilcoxon ``rank_genes_groups`` of every label against ``reference``, as one table.

    ``matrix`` is cells × genes log1p expression. Groups come in sorted label order without
    the reference, each with its ``n_genes`` best genes (None: all, scanpy's default) by
    score, or by |score| with ``rank_by_abs``. Equal to scanpy's result up to the order
    of genes with tied scores (scanpy's partial sort leaves it unspecified).
    """
    from statsmodels.stats.multitest import multipletests

    codes, groups = pd.factorize(np.asarray(labels).astype(str), sort=True)
    if reference not in set(groups):
        raise GenevaeInputError(f"reference={reference!r} is not one of the labels.")
    if codes.size != matrix.shape[0] or len(gene_names) != matrix.shape[1]:
        raise GenevaeInputError(
            f"labels ({codes.size}) and gene_names ({len(gene_names)}) must match the matrix "
            f"shape {matrix.shape}."
        )
    ref = int(np.flatnonzero(groups == reference)[0])
    sums = reference_rank_sums(matrix, codes, ref, len(groups))
    means = _group_means(matrix, codes, len(groups))
    sizes = np.bincount(codes, minlength=len(groups))
    m_active = sizes[ref]
    names = np.asarray(gene_names, dtype=object)
    frames = []
    for index, group in enumerate(groups):
        if index == ref:
            continue
        n_active = sizes[index]
        std_dev = np.sqrt(n_active * m_active * (n_active + m_active + 1) / 12.0)
        rank_sum = sums[index] + n_active * (n_active + 1) / 2.0
        scores = (rank_sum - (n_active * ((n_active + m_active + 1) / 2.0))) / std_dev
        scores[np.isnan(scores)] = 0
        pvals = 2 * stats.distributions.norm.sf(np.abs(scores))
        pvals_adj = multipletests(pvals, alpha=0.05, method="fdr_bh")[1]
        fold = (np.expm1(means[index]) + 1e-9) / (np.expm1(means[ref]) + 1e-9)
        top = _top(scores, n_genes, rank_by_abs)
        frames.append(
            pd.DataFrame(
                {
                    "group": group,
                    "names": names[top],
                    "scores": scores[top],
                    "logfoldchanges": np.log2(fold[top]),
                    "pvals": pvals[top],
                    "pvals_adj": pvals_adj[top],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
