"""Scoring an inferred gene regulatory network (GRN), e.g. GPO-VAE's sigmoid(mask logits).

Two views, as in GPO-VAE's evaluation (models.md §3.6):

- ``causalbench_statistical_eval``: does perturbing the regulator shift the target's
  expression? (CausalBench: Mann–Whitney test and 1-D Wasserstein distance per edge, and a
  false omission rate on random non-edges). μWD falls as more edges are kept, so compare
  models at the same number of top-K edges.
- ``reference_network_metrics``: agreement with a reference network (ChIP-Atlas, RegNetwork,
  ...) over all candidate pairs: precision/recall at a probability threshold, plus AUROC and
  AUPRC with their random baseline (the positive rate), which the original code lacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import mannwhitneyu, wasserstein_distance
from sklearn.metrics import average_precision_score, roc_auc_score

from genevae.errors import GenevaeInputError

EDGE_COLUMNS = ("regulator", "target", "probability")


def grn_edge_table(
    probabilities: np.ndarray, node_names: Sequence[str], n_perturbed: int
) -> pd.DataFrame:
    """Long table of a T×T edge-probability matrix (row = regulator, column = target).

    Self-loops are dropped; rows are sorted by probability, highest first.
    ``in_perturbed_block`` marks edges between the first ``n_perturbed`` nodes (G°), the only
    block GPO-VAE evaluates: the extra-gene block G⁺ is saturated with edges.
    """
    matrix = np.asarray(probabilities, dtype=np.float64)
    n_nodes = len(node_names)
    if matrix.shape != (n_nodes, n_nodes):
        raise GenevaeInputError(
            f"probabilities has shape {matrix.shape}; expected ({n_nodes}, {n_nodes}) "
            "to match node_names."
        )
    if not 0 <= n_perturbed <= n_nodes:
        raise GenevaeInputError(f"n_perturbed={n_perturbed} must be between 0 and {n_nodes}.")
    if not np.all(np.isfinite(matrix)) or matrix.min(initial=0) < 0 or matrix.max(initial=0) > 1:
        raise GenevaeInputError(
            "probabilities must be finite values in [0, 1] (use sigmoid(logits))."
        )
    rows, cols = np.nonzero(~np.eye(n_nodes, dtype=bool))
    names = np.asarray(node_names, dtype=object)
    table = pd.DataFrame(
        {
            "regulator": names[rows],
            "target": names[cols],
            "probability": matrix[rows, cols],
            "in_perturbed_block": (rows < n_perturbed) & (cols < n_perturbed),
        }
    )
    return table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)


def _require_edges(edges: pd.DataFrame, columns: Sequence[str] = EDGE_COLUMNS) -> None:
    missing = [c for c in columns if c not in edges.columns]
    if missing:
        raise GenevaeInputError(
            f"edges lacks column(s) {missing}; use grn_edge_table() or columns {list(columns)}."
        )


class _Expression:
    """Column access by gene name for a cells × genes matrix (dense, sparse or DataFrame)."""

    def __init__(self, expression: pd.DataFrame | ad.AnnData) -> None:
        if isinstance(expression, ad.AnnData):
            matrix = expression.X
            # column slices of CSR are O(nnz) each; convert once
            self.matrix = sp.csc_matrix(matrix) if sp.issparse(matrix) else np.asarray(matrix)
            genes = expression.var_names
        elif isinstance(expression, pd.DataFrame):
            self.matrix, genes = expression.to_numpy(dtype=np.float64), expression.columns
        else:
            raise GenevaeInputError(
                "expression must be a cells × genes pandas DataFrame or an AnnData "
                f"(log-normalised), not {type(expression).__name__}."
            )
        self.genes = pd.Index(genes).astype(str)
        self._cache: dict[str, np.ndarray] = {}

    def column(self, gene: str) -> np.ndarray:
        if gene not in self._cache:
            values = self.matrix[:, self.genes.get_loc(gene)]
            dense = values.toarray() if sp.issparse(values) else np.asarray(values)
            self._cache[gene] = dense.ravel().astype(np.float64)
        return self._cache[gene]


def _test_pairs(
    pairs: Sequence[tuple[str, str]],
    expression: _Expression,
    cells_of: dict[str, np.ndarray],
    control_label: str,
    p_value_threshold: float,
) -> tuple[int, list[float]]:
    """Number of significant pairs (two-sided Mann–Whitney) and each pair's Wasserstein distance."""
    significant, distances = 0, []
    controls = cells_of[control_label]
    for regulator, target in pairs:
        values = expression.column(target)
        observed, intervened = values[controls], values[cells_of[regulator]]
        if mannwhitneyu(observed, intervened).pvalue < p_value_threshold:
            significant += 1
        distances.append(float(wasserstein_distance(observed, intervened)))
    return significant, distances


def _mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def causalbench_statistical_eval(
    edges: pd.DataFrame,
    expression: pd.DataFrame | ad.AnnData,
    perturbation_labels: Sequence[str],
    control_label: str,
    top_k: int | None = None,
    n_negative: int = 500,
    seed: int = 0,
    *,
    edge_threshold: float = 0.5,
    p_value_threshold: float = 0.05,
    targets: Literal["perturbed", "measured"] = "perturbed",
) -> dict[str, float]:
    """CausalBench statistical evaluation of predicted regulator → target edges.

    ``expression`` holds log-normalised cells × genes (use held-out cells), and
    ``perturbation_labels`` the perturbed gene of each cell (``control_label`` for controls).
    An edge A → B is testable when A has perturbed cells, B is measured and A ≠ B; with
    ``targets="perturbed"`` (CausalBench, GPO-VAE's G° block) B must be a perturbed gene too.
    The testable edges are ranked by probability and the top ``top_k`` kept, or, without
    ``top_k``, those above ``edge_threshold``. An edge is a true positive when B's expression
    differs between control and A-perturbed cells (two-sided Mann–Whitney p < threshold).
    ``false_omission_rate`` is the fraction of ``n_negative`` random testable non-edges that
    are significant (divided by the pairs tested; the original divided by the pairs requested).
    The path-length ≤ 3 closure of the original is not computed.
    """
    _require_edges(edges)
    labels = np.asarray(perturbation_labels).astype(str)
    data = _Expression(expression)
    if labels.size != data.matrix.shape[0]:
        raise GenevaeInputError(
            f"perturbation_labels has {labels.size} entries for {data.matrix.shape[0]} cells."
        )
    if targets not in ("perturbed", "measured"):
        raise GenevaeInputError(f"targets={targets!r} must be 'perturbed' or 'measured'.")
    if top_k is not None and top_k < 1:
        raise GenevaeInputError(f"top_k={top_k} must be >= 1 or None.")
    cells_of = pd.Series(labels).groupby(labels).indices
    if control_label not in cells_of:
        raise GenevaeInputError(
            f"control_label={control_label!r} has no cells in perturbation_labels."
        )
    regulators = sorted(set(cells_of) - {control_label})
    measured = set(data.genes)
    target_universe = sorted((set(regulators) & measured) if targets == "perturbed" else measured)

    candidates = edges[
        edges["regulator"].astype(str).isin(regulators)
        & edges["target"].astype(str).isin(target_universe)
        & (edges["regulator"].astype(str) != edges["target"].astype(str))
    ].sort_values("probability", ascending=False, kind="stable")
    chosen = (
        candidates.head(top_k) if top_k else candidates[candidates["probability"] > edge_threshold]
    )
    predicted = list(
        zip(chosen["regulator"].astype(str), chosen["target"].astype(str), strict=True)
    )
    true_positives, distances = _test_pairs(
        predicted, data, cells_of, control_label, p_value_threshold
    )

    negatives = _sample_non_edges(regulators, target_universe, set(predicted), n_negative, seed)
    significant, negative_distances = _test_pairs(
        negatives, data, cells_of, control_label, p_value_threshold
    )
    return {
        "n_edges": len(predicted),
        "true_positives": true_positives,
        "false_positives": len(predicted) - true_positives,
        "mean_wasserstein": _mean_or_nan(distances),
        "n_negative_tested": len(negatives),
        "false_omission_rate": significant / len(negatives) if negatives else float("nan"),
        "negative_mean_wasserstein": _mean_or_nan(negative_distances),
    }


def _sample_non_edges(
    regulators: Sequence[str],
    target_universe: Sequence[str],
    predicted: set[tuple[str, str]],
    n_negative: int,
    seed: int,
) -> list[tuple[str, str]]:
    """Uniform sample (without replacement) of testable pairs that are not predicted edges."""
    regulator_index, target_index = pd.Index(regulators), pd.Index(target_universe)
    allowed = regulator_index.to_numpy()[:, None] != target_index.to_numpy()[None, :]
    for regulator, target in predicted:
        allowed[regulator_index.get_loc(regulator), target_index.get_loc(target)] = False
    flat = np.flatnonzero(allowed)
    if flat.size == 0 or n_negative <= 0:
        return []
    chosen = np.sort(
        np.random.default_rng(seed).choice(flat, min(n_negative, flat.size), replace=False)
    )
    rows, cols = np.unravel_index(chosen, allowed.shape)
    return list(zip(regulator_index[rows], target_index[cols], strict=True))


def _reference_frame(reference_edges: set[tuple[str, str]] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(reference_edges, pd.DataFrame):
        _require_edges(reference_edges, ("regulator", "target"))
        return reference_edges[["regulator", "target"]].astype(str)
    return pd.DataFrame(sorted(reference_edges), columns=["regulator", "target"]).astype(str)


def reference_network_metrics(
    edges_with_scores: pd.DataFrame,
    reference_edges: set[tuple[str, str]] | pd.DataFrame,
    candidate_regulators: Sequence[str],
    candidate_targets: Sequence[str],
    threshold: float = 0.5,
) -> dict[str, float]:
    """Precision/recall (probability > ``threshold``), AUROC and AUPRC against a reference.

    Every pair regulator ∈ ``candidate_regulators``, target ∈ ``candidate_targets`` (no
    self-pairs) is scored; pairs missing from ``edges_with_scores`` score 0 and reference
    edges outside the candidates are ignored. Choose candidates the reference can speak
    about, e.g. perturbed genes that are ChIP-seq'd TFs × measured genes. ``random_baseline``
    is the positive rate, the AUPRC of random scores.
    """
    _require_edges(edges_with_scores)
    regulators = pd.Index(pd.unique(np.asarray(candidate_regulators).astype(str)))
    targets = pd.Index(pd.unique(np.asarray(candidate_targets).astype(str)))
    if regulators.empty or targets.empty:
        raise GenevaeInputError("candidate_regulators and candidate_targets must not be empty.")
    scores = np.zeros((regulators.size, targets.size))
    rows = regulators.get_indexer(edges_with_scores["regulator"].astype(str))
    cols = targets.get_indexer(edges_with_scores["target"].astype(str))
    inside = (rows >= 0) & (cols >= 0)
    np.maximum.at(
        scores,
        (rows[inside], cols[inside]),
        edges_with_scores["probability"].to_numpy(float)[inside],
    )
    truth = np.zeros_like(scores, dtype=bool)
    reference = _reference_frame(reference_edges)
    ref_rows = regulators.get_indexer(reference["regulator"])
    ref_cols = targets.get_indexer(reference["target"])
    known = (ref_rows >= 0) & (ref_cols >= 0)
    truth[ref_rows[known], ref_cols[known]] = True
    not_self = regulators.to_numpy()[:, None] != targets.to_numpy()[None, :]
    y_true, y_score = truth[not_self], scores[not_self]
    predicted = y_score > threshold
    n_positive, n_predicted = int(y_true.sum()), int(predicted.sum())
    hits = int((predicted & y_true).sum())
    both_classes = 0 < n_positive < y_true.size
    return {
        "n_pairs": int(y_true.size),
        "n_positive": n_positive,
        "n_predicted": n_predicted,
        "precision": hits / n_predicted if n_predicted else 0.0,
        "recall": hits / n_positive if n_positive else float("nan"),
        "auroc": float(roc_auc_score(y_true, y_score)) if both_classes else float("nan"),
        "auprc": float(average_precision_score(y_true, y_score)) if both_classes else float("nan"),
        "random_baseline": n_positive / y_true.size if y_true.size else float("nan"),
    }


def read_reference_edges(
    path: str | Path, source_col: str = "source", target_col: str = "target"
) -> pd.DataFrame:
    """Regulator → target edges (unique, as strings) from a CSV/TSV such as ChIP-Atlas.

    The CausalBench ChIP-Atlas K562 table has columns ``,target,weight,source``.
    """
    separator = "\t" if str(path).removesuffix(".gz").endswith((".tsv", ".txt")) else ","
    header = pd.read_csv(path, sep=separator, nrows=0).columns
    missing = [c for c in (source_col, target_col) if c not in header]
    if missing:
        raise GenevaeInputError(
            f"{path} lacks column(s) {missing} (columns: {list(header)}); set source_col/target_col."
        )
    table = pd.read_csv(path, sep=separator, usecols=[source_col, target_col], dtype=str)
    edges = table.rename(columns={source_col: "regulator", target_col: "target"})
    edges = edges.dropna()[["regulator", "target"]].drop_duplicates()
    return edges.reset_index(drop=True)


def top_edges_per_regulator(edges: pd.DataFrame, n_top: int = 10) -> pd.DataFrame:
    """The ``n_top`` most probable targets of each regulator, with their rank (1 = best).

    Regulators keep their order of first appearance in ``edges``; ties keep table order.
    """
    _require_edges(edges)
    if n_top < 1:
        raise GenevaeInputError(f"n_top={n_top} must be >= 1.")
    ranked = edges.sort_values("probability", ascending=False, kind="stable")
    top = ranked.groupby("regulator", sort=False).head(n_top).copy()
    top["rank"] = top.groupby("regulator", sort=False).cumcount() + 1
    order = {regulator: i for i, regulator in enumerate(pd.unique(edges["regulator"]))}
    top["_order"] = top["regulator"].map(order)
    top = top.sort_values(["_order", "rank"], kind="stable").drop(columns="_order")
    return top.reset_index(drop=True)


def effect_size_grn(ate: pd.DataFrame, node_names: Sequence[str], n_perturbed: int) -> pd.DataFrame:
    """Model-free GRN baseline: edge A → B scored by |ATE of B when A is perturbed|.

    ``ate`` is perturbation × gene (e.g. the observed ATE of training cells). Scores are
    divided by the largest one, so they lie in [0, 1] and rank like the effect sizes; rows of
    perturbed nodes without an ATE row (and of extra nodes) score 0. Returns
    :func:`grn_edge_table` of these scores. It is what reading the data directly ranks, the
    bar a learned GRN should clear on statistical (CausalBench-style) evaluation.
    """
    nodes = pd.Index([str(n) for n in node_names])
    missing = nodes.difference(ate.columns.astype(str))
    if len(missing):
        raise GenevaeInputError(
            f"ate lacks node gene(s) {list(missing[:5])}; compute it on all measured genes."
        )
    effects = ate.set_axis(ate.index.astype(str), axis=0).set_axis(ate.columns.astype(str), axis=1)
    scores = np.zeros((len(nodes), len(nodes)))
    regulators = nodes[:n_perturbed].intersection(effects.index, sort=False)
    rows = nodes.get_indexer(regulators)
    scores[rows] = effects.loc[regulators, nodes].abs().to_numpy()
    np.fill_diagonal(scores, 0.0)
    largest = scores.max(initial=0.0)
    return grn_edge_table(scores / largest if largest > 0 else scores, nodes, n_perturbed)
