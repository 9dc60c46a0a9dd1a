"""Training-free baselines that every model's numbers are reported beside.

- :func:`pca_baseline`: a 50-component PCA of the same cells, as a latent space (for the
  silhouette and k-NN scores) and as a linear reconstruction (for the reconstruction scores).
- :func:`module_scores` + :func:`differential_module_scores`: per-cell gene-module scores
  (``scanpy.tl.score_genes``: mean of the module's genes minus a matched control set, or the
  plain mean log-expression of the module's genes), then a test between two groups of cells
  with Benjamini–Hochberg FDR. This is the obvious baseline for VEGA's Bayes-factor
  differential activity: no model, same modules.
- :func:`linear_perturbation_model`: the linear model on gene/perturbation embeddings of
  Ahlmann-Eltze, Huber & Anders (Nat Methods 2025), the perturbation-response baseline deep
  models do not yet beat. Its no-change and training-mean companions are ATE tables
  (``analysis.perturbation.control_mean_baseline`` and the pooled training mean there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from scipy import stats
from sklearn.decomposition import PCA

from genevae.errors import GenevaeInputError

GroupTest = Literal["welch", "mannwhitney"]
ScoreMethod = Literal["score_genes", "mean"]


@dataclass(frozen=True)
class PCABaseline:
    """Principal-component scores (cells × components) and the rank-k reconstruction."""

    latent: np.ndarray
    reconstruction: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def name(self) -> str:
        return f"pca{self.latent.shape[1]}"


def pca_baseline(x: np.ndarray | sp.spmatrix, n_components: int = 50, seed: int = 0) -> PCABaseline:
    """PCA of the (centred) expression matrix and its reconstruction from the components.

    ``n_components`` is capped at min(cells, genes) − 1. The reconstruction is
    scores · components + gene means, the best rank-k linear fit of the data.
    """
    dense = x.toarray() if sp.issparse(x) else np.asarray(x)
    dense = dense.astype(np.float64, copy=False)
    if dense.ndim != 2 or min(dense.shape) < 2:
        raise GenevaeInputError(f"PCA needs a cells × genes matrix, got shape {dense.shape}.")
    k = min(n_components, min(dense.shape) - 1)
    if k < 1:
        raise GenevaeInputError(f"n_components must be >= 1, got {n_components}.")
    pca = PCA(n_components=k, random_state=seed, svd_solver="auto")
    latent = pca.fit_transform(dense)
    return PCABaseline(
        latent=latent,
        reconstruction=pca.inverse_transform(latent),
        explained_variance_ratio=pca.explained_variance_ratio_,
    )


def module_scores(
    adata: ad.AnnData,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    method: ScoreMethod = "score_genes",
    ctrl_size: int = 50,
    n_bins: int = 25,
    seed: int = 0,
    layer: str | None = None,
) -> pd.DataFrame:
    """Cells × modules scores of log-normalised expression.

    ``method="score_genes"``: ``scanpy.tl.score_genes`` (module mean minus a matched control
    set; ``ctrl_size``, ``n_bins`` and ``seed`` apply). ``"mean"``: the mean log-expression of
    the module's genes, all modules in one sparse product (the training-free score VEGA's
    Bayes factors are checked against). Genes absent from ``adata`` are ignored; modules
    without any present gene are dropped (with their names in the error if none is left).
    ``adata`` is not modified.
    """
    if method not in ("score_genes", "mean"):
        raise GenevaeInputError(f"method={method!r} is not one of 'score_genes', 'mean'.")
    matrix = adata.X if layer is None else adata.layers[layer]
    present = _present_genes(gene_sets, adata.var_names)
    if method == "mean":
        return _mean_scores(matrix, adata.var_names, present, adata.obs_names)
    light = ad.AnnData(
        X=matrix, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names)
    )
    scores = {}
    for name, genes in present.items():
        sc.tl.score_genes(
            light,
            genes,
            ctrl_size=ctrl_size,
            n_bins=n_bins,
            random_state=seed,
            score_name="_score",
            use_raw=False,
        )
        scores[name] = light.obs["_score"].to_numpy(dtype=float)
    return pd.DataFrame(scores, index=adata.obs_names)


def _present_genes(
    gene_sets: Mapping[str, Sequence[str]], var_names: pd.Index
) -> dict[str, list[str]]:
    """Each set's genes that are in the data; sets with none are dropped (error if all are)."""
    present = {
        name: [gene for gene in dict.fromkeys(genes) if gene in var_names]
        for name, genes in gene_sets.items()
    }
    present = {name: genes for name, genes in present.items() if genes}
    if not present:
        raise GenevaeInputError(
            f"None of the {len(gene_sets)} gene sets shares a gene with the data "
            f"(e.g. {list(gene_sets)[:3]}); check that gene symbols match var_names."
        )
    return present


def _mean_scores(
    matrix: np.ndarray | sp.spmatrix,
    var_names: pd.Index,
    present: dict[str, list[str]],
    obs_names: pd.Index,
) -> pd.DataFrame:
    """Mean expression of each module's genes: X · membership / module size."""
    rows = np.concatenate([var_names.get_indexer(genes) for genes in present.values()])
    columns = np.repeat(np.arange(len(present)), [len(genes) for genes in present.values()])
    sizes = np.array([len(genes) for genes in present.values()], dtype=float)
    membership = sp.csc_matrix(
        (1.0 / sizes[columns], (rows, columns)), shape=(len(var_names), len(present))
    )
    scores = matrix @ membership
    scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
    return pd.DataFrame(scores, index=obs_names, columns=list(present))


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """BH-adjusted p-values (NaN stays NaN)."""
    values = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(values, np.nan)
    finite = np.isfinite(values)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(values[finite], method="bh")
    return adjusted


def differential_module_scores(
    scores: pd.DataFrame,
    labels: Sequence[str] | pd.Series,
    group1: str,
    group2: str | None = None,
    *,
    test: GroupTest = "welch",
) -> pd.DataFrame:
    """Test every module score between two groups of cells (group2 ``None`` = the rest).

    ``test="welch"`` is Welch's unequal-variance t-test (as the VEGA paper's supplementary
    check on mean activities); ``"mannwhitney"`` the two-sided rank-sum test.

    Returns:
        One row per module: module, mean_diff (group1 − group2), statistic, pval, fdr (BH),
        neg_log10_fdr, sorted by p-value.
    """
    if test not in ("welch", "mannwhitney"):
        raise GenevaeInputError(f"test={test!r} is not one of 'welch', 'mannwhitney'.")
    values = np.asarray(labels).astype(str)
    if len(values) != len(scores):
        raise GenevaeInputError(f"labels has {len(values)} entries but scores {len(scores)} rows.")
    first = values == group1
    second = ~first if group2 is None else values == group2
    for name, mask in (("group1", first), ("group2", second)):
        if mask.sum() < 2:
            raise GenevaeInputError(
                f"{name} has {int(mask.sum())} cells; need at least 2 (labels: "
                f"{sorted(set(values.tolist()))[:20]})."
            )
    a, b = scores.to_numpy(dtype=float)[first], scores.to_numpy(dtype=float)[second]
    if test == "welch":
        result = stats.ttest_ind(a, b, axis=0, equal_var=False)
    else:
        result = stats.mannwhitneyu(a, b, axis=0, alternative="two-sided")
    fdr = benjamini_hochberg(result.pvalue)
    table = pd.DataFrame(
        {
            "module": scores.columns.astype(str),
            "mean_diff": a.mean(axis=0) - b.mean(axis=0),
            "statistic": np.asarray(result.statistic, dtype=float),
            "pval": np.asarray(result.pvalue, dtype=float),
            "fdr": fdr,
            "neg_log10_fdr": -np.log10(np.clip(fdr, 1e-300, 1.0)),
        }
    )
    return table.sort_values("pval", kind="stable").reset_index(drop=True)


def _gene_embedding(expression: np.ndarray, n_components: int) -> np.ndarray:
    """Genes × d principal-component scores of a genes × conditions matrix (columns centred).

    As ``irlba::prcomp_irlba`` on the training pseudobulk in the paper's code: genes are the
    observations, conditions the variables. d is capped at the number of conditions.
    """
    centred = expression - expression.mean(axis=0, keepdims=True)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    d = min(n_components, singular.size)
    return left[:, :d] * singular[:d]


def _ridge_bilinear(
    change: np.ndarray, genes: np.ndarray, perturbations: np.ndarray, ridge: float
) -> np.ndarray:
    """K = (GᵀG + λI)⁻¹ Gᵀ Y Pᵀ (PPᵀ + λI)⁻¹, the closed-form ridge fit of Y ≈ G·K·P."""
    identity = np.eye(genes.shape[1])
    inner = np.linalg.solve(genes.T @ genes + ridge * identity, genes.T) @ change @ perturbations.T
    return np.linalg.solve(perturbations @ perturbations.T + ridge * identity, inner.T).T


def _check_linear_inputs(
    genes: pd.Index, conditions: pd.Index, control_label: str, perturbations: Sequence[str]
) -> None:
    targets = {*conditions, *map(str, perturbations)} - {control_label}
    unmeasured = sorted(targets - set(genes))
    if unmeasured or control_label not in set(conditions):
        raise GenevaeInputError(
            f"the linear baseline embeds a perturbation by its target gene: {unmeasured[:5]} "
            f"are not measured genes, or control_label {control_label!r} has no training row "
            f"(rows: {list(conditions)[:5]}...)."
        )


def linear_perturbation_model(
    training_pseudobulk: pd.DataFrame,
    control_label: str,
    perturbations: Sequence[str],
    *,
    n_components: int = 10,
    ridge: float = 0.1,
) -> pd.DataFrame:
    """Predicted ATE (perturbation × gene) of the linear baseline: Y ≈ G·K·Pᵀ + b.

    ``training_pseudobulk`` is the mean expression (labels × genes, controls included) of the
    training cells. Y is genes × training conditions of change against the control (the
    control's column is 0), b its row means; G holds the top ``n_components`` principal
    components of the pseudobulk (genes × d), P the rows of G of each condition's target gene
    (zero for the control), and K = (GᵀG + λI)⁻¹ Gᵀ (Y − b) Pᵀ (PPᵀ + λI)⁻¹ with λ = ``ridge``.
    A perturbation p, seen in training or not, is predicted as G·K·P[p]ᵀ + b. Defaults are
    the paper's (d = 10, λ = 0.1); labels must be measured gene symbols.
    """
    if n_components < 1 or ridge < 0:
        raise GenevaeInputError(f"n_components={n_components} must be >= 1 and ridge={ridge} >= 0.")
    control_label = str(control_label)
    genes = training_pseudobulk.columns.astype(str)
    conditions = training_pseudobulk.index.astype(str)
    _check_linear_inputs(genes, conditions, control_label, perturbations)
    expression = training_pseudobulk.to_numpy(dtype=np.float64).T
    change = expression - expression[:, [conditions.get_loc(control_label)]]
    gene_embedding = _gene_embedding(expression, n_components)

    def embed(labels: Sequence[str]) -> np.ndarray:
        """d × labels: each label's gene row of G, zero for the control."""
        columns = np.zeros((gene_embedding.shape[1], len(labels)))
        for i, label in enumerate(map(str, labels)):
            if label != control_label:
                columns[:, i] = gene_embedding[genes.get_loc(label)]
        return columns

    centre = change.mean(axis=1, keepdims=True)
    coefficients = _ridge_bilinear(change - centre, gene_embedding, embed(conditions), ridge)
    predicted = gene_embedding @ coefficients @ embed(perturbations) + centre
    return pd.DataFrame(
        predicted.T,
        index=pd.Index([str(p) for p in perturbations], name="perturbation"),
        columns=training_pseudobulk.columns,
    )
