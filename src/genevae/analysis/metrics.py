"""Evaluation metrics shared by every model, behind a small registry (name → function).

Each metric belongs to a family with a fixed call signature, so the evaluation pipeline
can score any model (and its baselines) by name:

- ``latent``: ``f(latent, labels) -> float`` (how well a latent space keeps labels apart);
- ``reconstruction``: ``f(observed, reconstructed) -> float`` (cells × genes arrays, scored
  on their mean profiles or per gene);
- ``ranking``: ``f(scores, truth) -> float`` (recovery of planted positives from scores);
- ``agreement``: ``f(a, b) -> float`` (two per-item scores from different methods).

Metrics computed elsewhere (perturbation and GRN scores from ``analysis.perturbation`` and
``analysis.grn``) are registered with ``compute=None`` so the report still knows their
direction and meaning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from genevae.analysis import latent as latent_analysis
from genevae.errors import GenevaeInputError

FAMILIES = ("latent", "reconstruction", "ranking", "agreement", "perturbation", "grn")


@dataclass(frozen=True)
class Metric:
    """A named score with its family, direction and a one-line meaning for the report."""

    name: str
    family: str
    higher_is_better: bool
    description: str
    compute: Callable[..., float] | None = None


METRICS: dict[str, Metric] = {}


def register_metric(
    name: str, family: str, *, higher_is_better: bool, description: str
) -> Callable[[Callable[..., float] | None], Callable[..., float] | None]:
    """Decorator (or plain call with ``None``) adding a metric to :data:`METRICS`."""
    if family not in FAMILIES:
        raise GenevaeInputError(f"metric family {family!r} is not one of {FAMILIES}.")

    def add(function: Callable[..., float] | None) -> Callable[..., float] | None:
        METRICS[name] = Metric(name, family, higher_is_better, description, function)
        return function

    return add


def get_metric(name: str) -> Metric:
    """The registered metric ``name``, with the list of known names if it is unknown."""
    if name not in METRICS:
        raise GenevaeInputError(f"Unknown metric {name!r}; registered metrics: {sorted(METRICS)}.")
    return METRICS[name]


def compute_metric(name: str, *args, **kwargs) -> float:
    """Run a registered metric that is computed in this module."""
    metric = get_metric(name)
    if metric.compute is None:
        raise GenevaeInputError(
            f"Metric {name!r} is computed by its model's pipeline, not here; read it from that "
            "pipeline's output table."
        )
    return float(metric.compute(*args, **kwargs))


# --- latent quality ------------------------------------------------------------------------


def _labels_for(latent: np.ndarray, labels: Sequence | pd.Series) -> np.ndarray:
    values = np.asarray(labels).astype(str)
    if latent.ndim != 2 or len(values) != len(latent):
        raise GenevaeInputError(
            f"latent must be cells × dimensions with one label per cell; got latent shape "
            f"{latent.shape} and {len(values)} labels."
        )
    if len(np.unique(values)) < 2:
        raise GenevaeInputError("latent metrics need at least two distinct labels.")
    return values


def _subsample(
    latent: np.ndarray, labels: np.ndarray, max_cells: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if max_cells is None or len(latent) <= max_cells:
        return latent, labels
    rows = np.sort(np.random.default_rng(seed).choice(len(latent), max_cells, replace=False))
    return latent[rows], labels[rows]


@register_metric(
    "silhouette",
    "latent",
    higher_is_better=True,
    description="mean Euclidean silhouette width of the labels in the latent space (−1 to 1)",
)
def silhouette(
    latent: np.ndarray,
    labels: Sequence | pd.Series,
    *,
    max_cells: int | None = 10000,
    seed: int = 0,
) -> float:
    """Mean silhouette width (sklearn, Euclidean); above ``max_cells`` a seeded subsample.

    High for cell type means the latent keeps cell types apart; for a batch label, values near
    zero are the goal (batch mixed).
    """
    points = np.asarray(latent, dtype=float)
    values = _labels_for(points, labels)
    points, values = _subsample(points, values, max_cells, seed)
    return latent_analysis.silhouette(pd.DataFrame(points), values)


@register_metric(
    "knn_accuracy",
    "latent",
    higher_is_better=True,
    description="stratified 5-fold accuracy of a 15-nearest-neighbour classifier of the label",
)
def knn_accuracy(
    latent: np.ndarray,
    labels: Sequence | pd.Series,
    *,
    k: int = 15,
    n_folds: int = 5,
    seed: int = 0,
) -> float:
    """Mean stratified ``n_folds``-fold accuracy of a ``k``-NN classifier on the latent.

    Labels seen only once are dropped; with small data, the folds shrink to the smallest
    label's count (at least 2) and ``k`` to the training-fold size, so a handful of bulk
    samples still gets a score.
    """
    points = np.asarray(latent, dtype=float)
    values = _labels_for(points, labels)
    names, counts = np.unique(values, return_counts=True)
    keep = np.isin(values, names[counts >= 2])
    if len(np.unique(values[keep])) < 2:
        raise GenevaeInputError("knn_accuracy needs two labels with at least 2 cells each.")
    folds = int(min(n_folds, counts[counts >= 2].min()))
    n_train = int(keep.sum() * (folds - 1) / folds)
    return latent_analysis.knn_label_accuracy(
        pd.DataFrame(points[keep]), values[keep], k=min(k, n_train), seed=seed, n_folds=folds
    )


@register_metric(
    "knn_chance",
    "latent",
    higher_is_better=True,
    description="accuracy of always predicting the most frequent label (k-NN reference)",
)
def knn_chance(latent: np.ndarray, labels: Sequence | pd.Series) -> float:
    """Share of the most frequent label: the accuracy a k-NN classifier must beat."""
    values = _labels_for(np.asarray(latent, dtype=float), labels)
    return float(pd.Series(values).value_counts(normalize=True).iloc[0])


# --- reconstruction ------------------------------------------------------------------------


def _pair(observed: np.ndarray, reconstructed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.asarray(observed, dtype=float), np.asarray(reconstructed, dtype=float)
    if first.shape != second.shape or first.ndim != 2 or first.size == 0:
        raise GenevaeInputError(
            f"observed and reconstructed must be cells × genes arrays of one shape; got "
            f"{first.shape} and {second.shape}."
        )
    return first, second


@register_metric(
    "mean_profile_r2",
    "reconstruction",
    higher_is_better=True,
    description="R² between the mean observed and mean reconstructed profile over genes",
)
def mean_profile_r2(
    observed: np.ndarray, reconstructed: np.ndarray, *, kind: str = "pearson_squared"
) -> float:
    """R² of the cells' mean reconstructed profile against their mean observed profile.

    ``kind="pearson_squared"`` (VEGA Fig. 4: squared Pearson correlation of the two mean
    profiles over genes) or ``"coefficient_of_determination"`` (1 − SS_res/SS_tot, which also
    penalises offsets and scale errors).
    """
    first, second = _pair(observed, reconstructed)
    mean_observed, mean_reconstructed = first.mean(axis=0), second.mean(axis=0)
    if kind == "pearson_squared":
        if mean_observed.std() == 0 or mean_reconstructed.std() == 0:
            return float("nan")
        return float(np.corrcoef(mean_observed, mean_reconstructed)[0, 1] ** 2)
    if kind == "coefficient_of_determination":
        residual = np.sum((mean_observed - mean_reconstructed) ** 2)
        total = np.sum((mean_observed - mean_observed.mean()) ** 2)
        return float(1.0 - residual / total) if total > 0 else float("nan")
    raise GenevaeInputError(
        f"kind={kind!r} is not one of 'pearson_squared', 'coefficient_of_determination'."
    )


def gene_squared_error(observed: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """Mean squared reconstruction error of every gene over the cells (length = genes)."""
    first, second = _pair(observed, reconstructed)
    return ((first - second) ** 2).mean(axis=0)


@register_metric(
    "median_gene_mse",
    "reconstruction",
    higher_is_better=False,
    description="median over genes of the per-gene mean squared reconstruction error",
)
def median_gene_mse(observed: np.ndarray, reconstructed: np.ndarray) -> float:
    """Median of :func:`gene_squared_error` (robust to a few badly fitted genes)."""
    return float(np.median(gene_squared_error(observed, reconstructed)))


# --- rankings and agreement ------------------------------------------------------------------


def _scores_and_truth(scores: Sequence[float], truth: Sequence[bool]) -> tuple[np.ndarray, ...]:
    values, positives = np.asarray(scores, dtype=float), np.asarray(truth, dtype=bool)
    if values.shape != positives.shape or values.ndim != 1:
        raise GenevaeInputError(
            f"scores and truth must be 1-D of equal length; got {values.shape}, {positives.shape}."
        )
    if positives.all() or not positives.any():
        raise GenevaeInputError("truth needs at least one positive and one negative item.")
    if not np.isfinite(values).all():
        raise GenevaeInputError("scores contain NaN or infinite values.")
    return values, positives


@register_metric(
    "auroc",
    "ranking",
    higher_is_better=True,
    description="area under the ROC curve of the scores for the planted positives (0.5 = chance)",
)
def auroc(scores: Sequence[float], truth: Sequence[bool]) -> float:
    """AUROC (ties count half, as the Mann–Whitney statistic)."""
    values, positives = _scores_and_truth(scores, truth)
    return float(roc_auc_score(positives, values))


@register_metric(
    "auprc",
    "ranking",
    higher_is_better=True,
    description="average precision of the scores for the planted positives (chance = prevalence)",
)
def auprc(scores: Sequence[float], truth: Sequence[bool]) -> float:
    """Average precision (sklearn's step-wise area under the precision–recall curve)."""
    values, positives = _scores_and_truth(scores, truth)
    return float(average_precision_score(positives, values))


@register_metric(
    "spearman",
    "agreement",
    higher_is_better=True,
    description="Spearman rank correlation between two per-module scores",
)
def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ over the items where both scores are finite (NaN if constant)."""
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape:
        raise GenevaeInputError(f"a and b differ in length: {first.shape} vs {second.shape}.")
    finite = np.isfinite(first) & np.isfinite(second)
    if finite.sum() < 3 or np.ptp(first[finite]) == 0 or np.ptp(second[finite]) == 0:
        return float("nan")
    return float(stats.spearmanr(first[finite], second[finite]).statistic)


@register_metric(
    "call_jaccard",
    "agreement",
    higher_is_better=True,
    description="Jaccard index of the items called significant by two methods",
)
def call_jaccard(a: Sequence[bool], b: Sequence[bool]) -> float:
    """|A ∩ B| / |A ∪ B| of two boolean calls (NaN when neither calls anything)."""
    first, second = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = (first | second).sum()
    return float((first & second).sum() / union) if union else float("nan")


def top_k_overlap(a: pd.Series, b: pd.Series, k: int = 50) -> float:
    """Fraction of the ``k`` top-ranked items of ``a`` that are also in the top ``k`` of ``b``.

    Both are item → score Series (higher = more important); VEGA Fig. 4 uses k = 50 modules
    ranked by |ln BF|.
    """
    if k < 1 or k > min(len(a), len(b)):
        raise GenevaeInputError(f"k={k} must be between 1 and the number of items ({len(a)}).")
    top_a = set(a.sort_values(ascending=False, kind="stable").index[:k])
    top_b = set(b.sort_values(ascending=False, kind="stable").index[:k])
    return len(top_a & top_b) / k


# Scores computed by the gpo_vae pipeline (analysis.perturbation / analysis.grn); a column
# such as ``pearson_delta_vs_control_top20de_pooled_testcells`` or
# ``grn_mean_wasserstein_top10`` maps to a base name below through :func:`base_metric_name`
# (reference suffix dropped, ``top<k>de`` → ``topkde``, a trailing ``_top<k>`` dropped).
_DELTA = "predicted vs observed Δ (ATE)"
for _name, _family, _higher, _description in (
    (
        "pearson_delta_vs_control_allgenes_pooled",
        "perturbation",
        True,
        f"Pearson r of {_DELTA} against the control mean, pooled over perturbations × genes",
    ),
    (
        "r2_delta_vs_control_allgenes_pooled",
        "perturbation",
        True,
        f"R² of {_DELTA} against the control mean, pooled over perturbations × genes",
    ),
    (
        "pearson_delta_vs_control_topkde_pooled",
        "perturbation",
        True,
        f"Pearson r of {_DELTA}, pooled over each perturbation's top-k |Δ| genes",
    ),
    (
        "r2_delta_vs_control_topkde_pooled",
        "perturbation",
        True,
        f"R² of {_DELTA}, pooled over each perturbation's top-k |Δ| genes",
    ),
    (
        "pearson_delta_vs_control_allgenes",
        "perturbation",
        True,
        f"Pearson r of {_DELTA} against the control mean, per perturbation, averaged",
    ),
    (
        "pearson_delta_vs_control_topkde",
        "perturbation",
        True,
        f"Pearson r of {_DELTA} on its top-k |Δ| genes, per perturbation, averaged",
    ),
    (
        "pearson_delta_vs_perturbed_centroid_allgenes",
        "perturbation",
        True,
        "Pearson r of prediction − perturbed centroid vs truth − centroid (Systema), averaged",
    ),
    (
        "pearson_delta_vs_perturbed_centroid_topkde",
        "perturbation",
        True,
        "the same on each perturbation's top-k |Δ| genes (Systema PearsonΔ20)",
    ),
    (
        "jaccard_topkde",
        "perturbation",
        True,
        "overlap of the top-k |Δ| genes (observed vs predicted), averaged",
    ),
    (
        "centroid_accuracy",
        "perturbation",
        True,
        "share of other perturbations' profiles farther from a prediction than its own (Systema)",
    ),
    ("grn_edges_above_threshold", "grn", False, "edges with probability above the threshold"),
    ("grn_true_positives", "grn", True, "top-K edges whose target shifts (Mann–Whitney p < 0.05)"),
    ("grn_false_positives", "grn", False, "top-K edges whose target does not shift"),
    ("grn_mean_wasserstein", "grn", True, "mean Wasserstein distance of the top-K edges (μWD)"),
    ("grn_false_omission_rate", "grn", False, "share of random non-edges that shift (FOR)"),
    ("reference_n_pairs", "grn", True, "regulator → target pairs scored against the reference"),
    ("reference_n_positive", "grn", True, "scored pairs that are reference edges"),
    ("reference_precision", "grn", True, "precision against the reference network"),
    ("reference_recall", "grn", True, "recall against the reference network"),
    ("reference_auroc", "grn", True, "AUROC of edge probabilities against the reference network"),
    ("reference_auprc", "grn", True, "AUPRC of edge probabilities against the reference network"),
    ("reference_random_baseline", "grn", True, "AUPRC of a random edge ranking (prevalence)"),
):
    register_metric(_name, _family, higher_is_better=_higher, description=_description)(None)

_SUFFIXES = re.compile(r"_(test|all|train|validation)cells$")
_TOP_K_DE = re.compile(r"_top\d+de")
_TOP_K = re.compile(r"_top\d+$")


def base_metric_name(column: str) -> str | None:
    """The registered name behind a metric column (reference and top-k suffixes dropped)."""
    name = _SUFFIXES.sub("", column, count=1)
    for candidate in (column, name, _TOP_K_DE.sub("_topkde", name), _TOP_K.sub("", name)):
        if candidate in METRICS:
            return candidate
    return None


def metric_descriptions(names: Iterable[str]) -> pd.DataFrame:
    """Family, direction and meaning of metric columns (unregistered names are skipped)."""
    rows = [
        {
            "metric": column,
            "family": METRICS[name].family,
            "better": "higher" if METRICS[name].higher_is_better else "lower",
            "description": METRICS[name].description,
        }
        for column in dict.fromkeys(names)
        if (name := base_metric_name(column)) is not None
    ]
    return pd.DataFrame(rows, columns=["metric", "family", "better", "description"])


# --- tables over methods ---------------------------------------------------------------------


def _or_nan(metric: Callable[..., float], *args, **kwargs) -> float:
    """The metric, or NaN when the data cannot support it (e.g. a label with one sample)."""
    try:
        return metric(*args, **kwargs)
    except GenevaeInputError:
        return float("nan")


def latent_scores(
    latents: Mapping[str, np.ndarray],
    obs: pd.DataFrame,
    label_keys: Sequence[str],
    *,
    k: int = 15,
    n_folds: int = 5,
    max_cells: int | None = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Silhouette, k-NN accuracy and its chance level of every latent space for every label.

    A score the data cannot support (a single label, labels seen once) is NaN. ``latents`` maps a method (a model or a baseline such as ``pca50``) to its cells × dims
    array, rows in ``obs`` order. Returns a long table: method, family, metric, subset (the
    label key), value.
    """
    missing = [key for key in label_keys if key not in obs.columns]
    if missing:
        raise GenevaeInputError(f"obs lacks label columns {missing}; it has {list(obs.columns)}.")
    rows = []
    for key in label_keys:
        labels = obs[key].astype(str).to_numpy()
        for method, latent in latents.items():
            scores = {
                "silhouette": _or_nan(silhouette, latent, labels, max_cells=max_cells, seed=seed),
                "knn_accuracy": _or_nan(
                    knn_accuracy, latent, labels, k=k, n_folds=n_folds, seed=seed
                ),
            }
            rows += [
                {"method": method, "family": "latent", "metric": m, "subset": key, "value": v}
                for m, v in scores.items()
            ]
        chance = _or_nan(knn_chance, next(iter(latents.values())), labels)
        rows.append(
            {
                "method": "chance",
                "family": "latent",
                "metric": "knn_accuracy",
                "subset": key,
                "value": chance,
            }
        )
    return pd.DataFrame(rows, columns=["method", "family", "metric", "subset", "value"])


def reconstruction_scores(
    observed: np.ndarray,
    reconstructions: Mapping[str, np.ndarray],
    groups: Mapping[str, Sequence[str]] | None = None,
    *,
    kind: str = "pearson_squared",
) -> pd.DataFrame:
    """Mean-profile R² (all cells and per group level) and median per-gene MSE per method.

    ``groups`` maps a label key (e.g. ``cell_type``) to one label per cell; each level gets
    a row with subset ``"<key>=<level>"`` and their average a row ``"mean over <key>"``.
    Returns method, family, metric, subset, value.
    """
    rows = []
    for method, reconstructed in reconstructions.items():
        rows.append(
            {
                "method": method,
                "metric": "mean_profile_r2",
                "subset": "all",
                "value": mean_profile_r2(observed, reconstructed, kind=kind),
            }
        )
        rows.append(
            {
                "method": method,
                "metric": "median_gene_mse",
                "subset": "all",
                "value": median_gene_mse(observed, reconstructed),
            }
        )
        for key, labels in (groups or {}).items():
            values = np.asarray(labels).astype(str)
            per_level = {
                level: mean_profile_r2(
                    observed[values == level], reconstructed[values == level], kind=kind
                )
                for level in sorted(set(values))
            }
            rows += [
                {
                    "method": method,
                    "metric": "mean_profile_r2",
                    "subset": f"{key}={level}",
                    "value": r2,
                }
                for level, r2 in per_level.items()
            ]
            rows.append(
                {
                    "method": method,
                    "metric": "mean_profile_r2",
                    "subset": f"mean over {key}",
                    "value": float(np.nanmean(list(per_level.values()))),
                }
            )
    table = pd.DataFrame(rows, columns=["method", "metric", "subset", "value"])
    table.insert(1, "family", "reconstruction")
    return table


def recovery_scores(
    scores: Mapping[str, pd.Series], positives: Iterable[str], items: Sequence[str]
) -> pd.DataFrame:
    """AUROC and AUPRC of each method's item scores for the planted ``positives``.

    Every method is scored on the same ``items`` (e.g. all modules); items a method left out
    or gave NaN (e.g. gene sets GSEA did not test) get that method's lowest score. Returns
    method, auroc, auprc, prevalence.
    """
    planted = set(positives)
    truth = np.isin(np.asarray(items), list(planted))
    rows = []
    for method, series in scores.items():
        values = series.astype(float).reindex(items)
        values = values.fillna(values.min() if values.notna().any() else 0.0).to_numpy()
        rows.append(
            {
                "method": method,
                "auroc": auroc(values, truth),
                "auprc": auprc(values, truth),
                "prevalence": float(truth.mean()),
            }
        )
    return pd.DataFrame(rows, columns=["method", "auroc", "auprc", "prevalence"])
