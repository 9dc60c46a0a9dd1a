"""Perturbation-response evaluation: average treatment effects (ATE), metrics and baselines.

The "perturbseq" scale of SAMS-VAE / GPO-VAE (``reference/models.md`` §3.6): every cell (or
model sample) is scaled to ``target_sum`` total counts and transformed with log2(x + 1); a
perturbation's ATE is its mean minus the mean of the control cells, per gene.

Which cells form the observed reference is the caller's choice. The original ``eval.py``
used **all** cells, training cells included, so its reference was not held out; the
independent reproduction found that scoring against held-out (test) cells lowers ATE
Pearson by 0.11–0.19. :func:`evaluate_perturbation_prediction` therefore defaults to the
test cells and reports the training-mean baselines and a split-half noise ceiling beside
the model, so a number can be read against what a non-parametric estimate already achieves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.spatial.distance import cdist

from genevae.analysis.baselines import linear_perturbation_model
from genevae.errors import GenevaeInputError

Counts = np.ndarray | sp.spmatrix | sp.sparray | pd.DataFrame


class CountSampler(Protocol):
    """A model that draws counts for dosage rows (``GPOVAE.sample_counts``)."""

    def sample_counts(
        self,
        dosage: torch.Tensor,
        n_particles: int,
        library_size: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor: ...


# --------------------------------------------------------------------------- transforms
def perturbseq_transform(counts: Counts, target_sum: float = 1e4) -> np.ndarray | sp.csr_matrix:
    """log2(1 + target_sum · counts / row total), keeping sparse input sparse (zeros stay 0)."""
    if isinstance(counts, pd.DataFrame):
        counts = counts.to_numpy()
    if sp.issparse(counts):
        matrix = sp.csr_matrix(counts, dtype=np.float64, copy=True)
        totals = np.asarray(matrix.sum(axis=1)).ravel()
        scale = target_sum / np.maximum(totals, 1e-12)
        matrix.data = np.log2(1.0 + matrix.data * np.repeat(scale, np.diff(matrix.indptr)))
        return matrix
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 2:
        raise GenevaeInputError(f"counts must be a cells × genes matrix, got {values.ndim} dims.")
    totals = values.sum(axis=1, keepdims=True)
    return np.log2(1.0 + values * (target_sum / np.maximum(totals, 1e-12)))


def _gene_names(counts: Counts, gene_names: Sequence[str] | None) -> pd.Index:
    n_genes = counts.shape[1]
    if gene_names is None:
        if isinstance(counts, pd.DataFrame):
            return pd.Index(counts.columns.astype(str), name="gene")
        return pd.Index([str(i) for i in range(n_genes)], name="gene")
    if len(gene_names) != n_genes:
        raise GenevaeInputError(
            f"gene_names has {len(gene_names)} entries but counts has {n_genes} columns."
        )
    return pd.Index(list(gene_names), name="gene")


def _labels(perturbation_labels: Iterable, n_cells: int) -> np.ndarray:
    labels = np.asarray(pd.Series(list(perturbation_labels)).astype(str))
    if len(labels) != n_cells:
        raise GenevaeInputError(
            f"perturbation_labels has {len(labels)} entries but counts has {n_cells} rows."
        )
    return labels


def _group_means(values: np.ndarray | sp.csr_matrix, labels: np.ndarray) -> pd.DataFrame:
    """Mean row per label (sorted labels × genes), via one sparse indicator product."""
    codes, groups = pd.factorize(labels, sort=True)
    indicator = sp.csr_matrix(
        (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(groups), len(codes))
    )
    sums = indicator @ values
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    sizes = np.bincount(codes, minlength=len(groups))[:, None]
    return pd.DataFrame(sums / sizes, index=pd.Index(groups, name="perturbation"))


def pseudobulk(
    counts: Counts,
    perturbation_labels: Iterable,
    target_sum: float = 1e4,
    *,
    gene_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean perturbseq-scale expression per label (labels sorted × genes), controls included."""
    genes = _gene_names(counts, gene_names)
    labels = _labels(perturbation_labels, counts.shape[0])
    means = _group_means(perturbseq_transform(counts, target_sum), labels)
    means.columns = genes
    return means


def observed_ate(
    counts: Counts,
    perturbation_labels: Iterable,
    control_label: str,
    target_sum: float = 1e4,
    *,
    gene_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Observed ATE (perturbation × gene) on the perturbseq scale, perturbations sorted.

    Pass the cells that should form the reference (e.g. held-out test cells); gene names come
    from ``gene_names``, the DataFrame columns, or default to "0", "1", ….
    """
    means = pseudobulk(counts, perturbation_labels, target_sum, gene_names=gene_names)
    return ate_from_pseudobulk(means, control_label)


def ate_from_pseudobulk(means: pd.DataFrame, control_label: str) -> pd.DataFrame:
    """Each perturbation's pseudobulk minus the control's (rows: perturbations)."""
    control_label = str(control_label)
    if control_label not in set(means.index.astype(str)):
        raise GenevaeInputError(
            f"control_label {control_label!r} is not among the perturbation labels; pass the "
            "label of the non-targeting cells (and include some control cells)."
        )
    effects = means.drop(index=control_label) - means.loc[control_label]
    if effects.empty:
        raise GenevaeInputError("There are no perturbed cells besides the controls.")
    return effects


# ------------------------------------------------------------------------- model side
@torch.no_grad()
def predicted_ate(
    model: CountSampler,
    dosage_per_perturbation: pd.DataFrame,
    gene_names: Sequence[str],
    *,
    n_particles: int = 2500,
    particles_per_batch: int = 100,
    library_size: float = 1e4,
    target_sum: float = 1e4,
    seed: int = 0,
) -> pd.DataFrame:
    """Model ATE (perturbation × gene): sampled counts on the same perturbseq scale.

    ``dosage_per_perturbation`` has one row per perturbation (index = label, columns = GRN
    nodes); the all-zero control dosage is added here. Each particle shares one draw of the
    global variables across all dosages, with z_basal drawn afresh per dosage from the prior;
    counts come from the artifact-free likelihood (``model.sample_counts``), as the original
    with 2,500 particles at library size 1e4.
    """
    dosage = np.asarray(dosage_per_perturbation, dtype=np.float32)
    if dosage.ndim != 2 or len(dosage) == 0:
        raise GenevaeInputError(
            "dosage_per_perturbation must be a non-empty perturbation × node table."
        )
    zero_rows = dosage_per_perturbation.index[~dosage.any(axis=1)].tolist()
    if zero_rows:
        raise GenevaeInputError(
            f"dosage_per_perturbation rows {list(map(str, zero_rows))[:5]} are all zero; drop the "
            "control row, the control dosage is added automatically."
        )
    if n_particles < 1 or particles_per_batch < 1:
        raise GenevaeInputError("n_particles and particles_per_batch must be at least 1.")
    all_dosages = torch.from_numpy(np.vstack([np.zeros((1, dosage.shape[1]), np.float32), dosage]))
    generator = torch.Generator().manual_seed(seed)
    totals = torch.zeros(len(all_dosages), len(gene_names), dtype=torch.float64)
    for start in range(0, n_particles, particles_per_batch):
        chunk = min(particles_per_batch, n_particles - start)
        samples = model.sample_counts(all_dosages, chunk, library_size, generator).double().cpu()
        if samples.shape[-1] != len(gene_names):
            raise GenevaeInputError(
                f"The model samples {samples.shape[-1]} genes but gene_names has {len(gene_names)}."
            )
        scaled = samples * (target_sum / samples.sum(-1, keepdim=True).clamp_min(1e-12))
        totals += torch.log2(1.0 + scaled).sum(0)
    means = (totals / n_particles).numpy()
    return pd.DataFrame(
        means[1:] - means[:1],
        index=pd.Index(dosage_per_perturbation.index.astype(str), name="perturbation"),
        columns=pd.Index(list(gene_names), name="gene"),
    )


# ---------------------------------------------------------------------------- metrics
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r, NaN when either side is constant (the correlation is undefined)."""
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination 1 − SS_res / SS_tot (sklearn's r2_score); NaN if SS_tot = 0."""
    total = ((observed - observed.mean()) ** 2).sum()
    if total == 0:
        return float("nan")
    return float(1.0 - ((observed - predicted) ** 2).sum() / total)


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest |values| (ties broken by gene order)."""
    return np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]


def _mean_jaccard(observed: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """Mean over perturbations of |top_k(obs) ∩ top_k(pred)| / |∪|.

    A prediction row whose |values| are all equal (e.g. the zero-effect control baseline) has
    no top-k set, so its Jaccard, and hence the mean, is NaN.
    """
    top_observed, top_predicted = _top_k(observed, k), _top_k(predicted, k)
    magnitudes = np.abs(predicted)
    scores = []
    for row, (obs_set, pred_set) in enumerate(zip(top_observed, top_predicted, strict=True)):
        if k < predicted.shape[1] and np.ptp(magnitudes[row]) == 0:
            scores.append(np.nan)
            continue
        obs_set, pred_set = set(obs_set), set(pred_set)
        scores.append(len(obs_set & pred_set) / len(obs_set | pred_set))
    return float(np.mean(scores))


def _aligned(observed: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """``predicted`` reordered to ``observed``'s perturbations and genes (which must match)."""
    for axis, name in ((0, "perturbations"), (1, "genes")):
        left, right = set(observed.axes[axis]), set(predicted.axes[axis])
        if left != right:
            raise GenevaeInputError(
                f"observed and predicted ATE have different {name}: only observed "
                f"{sorted(map(str, left - right))[:5]}, only predicted "
                f"{sorted(map(str, right - left))[:5]}. "
                "Compute both on the same perturbations and genes."
            )
    return predicted.loc[observed.index, observed.columns]


def _per_perturbation_pearson(
    observed: np.ndarray, predicted: np.ndarray, columns: np.ndarray | None = None
) -> float:
    """Mean over perturbations (rows) of Pearson r, on each row's ``columns`` (default: all).

    NaN when any row's correlation is undefined (a constant row), so a predictor that is
    constant after the reference is subtracted is never credited with a score.
    """
    if columns is not None:
        observed = np.take_along_axis(observed, columns, axis=1)
        predicted = np.take_along_axis(predicted, columns, axis=1)
    return float(np.mean([_pearson(o, p) for o, p in zip(observed, predicted, strict=True)]))


def centroid_accuracy(observed: pd.DataFrame, predicted: pd.DataFrame) -> float:
    """Systema's centroid accuracy: how often a prediction is nearest its own perturbation.

    Per perturbation p, the fraction of the *other* perturbations' observed profiles that lie
    farther (Euclidean) from p's prediction than p's own observed profile does (ties count
    as not farther); the mean over perturbations. 1 = every prediction is closest to its own
    truth; a prediction that ignores the perturbation scores about 0.5 on average.
    """
    predicted = _aligned(observed, predicted)
    if len(observed) < 2:
        raise GenevaeInputError(
            f"centroid accuracy needs at least 2 perturbations, got {len(observed)}."
        )
    obs = observed.to_numpy(dtype=np.float64)
    pred = predicted.to_numpy(dtype=np.float64)
    distances = cdist(pred, obs)  # perturbations², without a perturbations² × genes temporary
    own = np.diag(distances)[:, None]
    farther = (distances > own).sum(axis=1)
    return float(np.mean(farther / (len(obs) - 1)))


def perturbed_centroid_ate(training_ate: pd.DataFrame) -> pd.Series:
    """Systema's reference, the mean of the training perturbations' centroids, as an ATE.

    Systema averages the per-perturbation mean profiles of the perturbed training cells;
    minus the control mean, that is the mean training ATE over perturbations (each
    perturbation counts once, whatever its number of cells).
    """
    return training_ate.mean(axis=0)


def ate_metrics(
    observed: pd.DataFrame,
    predicted: pd.DataFrame,
    top_k: Sequence[int] = (20, 50),
    perturbed_centroid: pd.Series | None = None,
) -> dict[str, float]:
    """Agreement of predicted and observed ATE (Δ against the control mean), named by content.

    Pooled over perturbation × gene, as GPO-VAE's ``get_ate_metrics``:
    ``pearson_delta_vs_control_allgenes_pooled`` / ``r2_delta_vs_control_allgenes_pooled``,
    and per k in ``top_k`` the same on each perturbation's k genes with the largest
    |observed ATE| (``..._top{k}de_pooled``). Mean over perturbations of per-perturbation
    Pearson r (GEARS/Systema): ``pearson_delta_vs_control_allgenes`` and
    ``pearson_delta_vs_control_top{k}de``. ``jaccard_top{k}de``: mean overlap of the observed
    and predicted top-k |ATE| gene sets. ``centroid_accuracy`` (Systema), when there are at
    least 2 perturbations. With ``perturbed_centroid`` (an ATE row over the genes, e.g.
    :func:`perturbed_centroid_ate` of the training cells), Systema's
    ``pearson_delta_vs_perturbed_centroid_allgenes`` / ``..._top{k}de``: per-perturbation
    Pearson r of (observed − centroid) and (predicted − centroid), averaged; this removes the
    shift shared by all perturbations. R² is 1 − SS_res/SS_tot with the observed ATE as truth.
    Undefined values are NaN: Pearson of a constant prediction, R² of a constant reference,
    Jaccard of a prediction row without a top-k set.
    """
    predicted = _aligned(observed, predicted)
    obs = observed.to_numpy(dtype=np.float64)
    pred = predicted.to_numpy(dtype=np.float64)
    metrics = {
        "pearson_delta_vs_control_allgenes_pooled": _pearson(obs.ravel(), pred.ravel()),
        "r2_delta_vs_control_allgenes_pooled": _r2(obs.ravel(), pred.ravel()),
        "pearson_delta_vs_control_allgenes": _per_perturbation_pearson(obs, pred),
    }
    if perturbed_centroid is not None:
        centre = perturbed_centroid.reindex(observed.columns).to_numpy(dtype=np.float64)
        if np.isnan(centre).any():
            raise GenevaeInputError("perturbed_centroid must have a value for every gene.")
        metrics["pearson_delta_vs_perturbed_centroid_allgenes"] = _per_perturbation_pearson(
            obs - centre, pred - centre
        )
    for k in top_k:
        if not 1 <= k <= obs.shape[1]:
            raise GenevaeInputError(
                f"top_k value {k} must be between 1 and the number of genes ({obs.shape[1]})."
            )
        top = _top_k(obs, k)
        obs_top = np.take_along_axis(obs, top, axis=1).ravel()
        pred_top = np.take_along_axis(pred, top, axis=1).ravel()
        metrics[f"pearson_delta_vs_control_top{k}de_pooled"] = _pearson(obs_top, pred_top)
        metrics[f"r2_delta_vs_control_top{k}de_pooled"] = _r2(obs_top, pred_top)
        metrics[f"pearson_delta_vs_control_top{k}de"] = _per_perturbation_pearson(obs, pred, top)
        if perturbed_centroid is not None:
            metrics[f"pearson_delta_vs_perturbed_centroid_top{k}de"] = _per_perturbation_pearson(
                obs - centre, pred - centre, top
            )
        metrics[f"jaccard_top{k}de"] = _mean_jaccard(obs, pred, k)
    if len(obs) >= 2:
        metrics["centroid_accuracy"] = centroid_accuracy(observed, predicted)
    return metrics


# --------------------------------------------------------------------------- baselines
def training_mean_baseline(
    counts: Counts,
    perturbation_labels: Iterable,
    control_label: str,
    *,
    pooled: bool = False,
    target_sum: float = 1e4,
    gene_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Predict each perturbation's ATE by its mean over the given (training) cells.

    The non-parametric baseline of the independent reproduction, which matches the
    measurement ceiling under a held-out reference. ``pooled=True`` gives its "global training
    mean": every perturbation gets the average training ATE across perturbations.
    """
    effects = observed_ate(
        counts, perturbation_labels, control_label, target_sum, gene_names=gene_names
    )
    if pooled:
        effects.loc[:, :] = np.broadcast_to(effects.mean(axis=0).to_numpy(), effects.shape)
    return effects


def control_mean_baseline(observed: pd.DataFrame) -> pd.DataFrame:
    """Predict every perturbed mean by the control mean, i.e. an ATE of exactly zero.

    Its Pearson and Jaccard are undefined (a constant prediction has no correlation and no
    top-k genes), so :func:`ate_metrics` reports them as NaN; its R² is −Σ ATE² / SS_tot + 1,
    the score of predicting "no effect".
    """
    return pd.DataFrame(0.0, index=observed.index, columns=observed.columns)


def _take_rows(counts: Counts, rows: np.ndarray) -> Counts:
    if isinstance(counts, pd.DataFrame):
        return counts.iloc[rows]
    if sp.issparse(counts):
        return sp.csr_matrix(counts)[rows]
    return np.asarray(counts)[rows]


def split_half_noise_ceiling(
    counts: Counts,
    perturbation_labels: Iterable,
    control_label: str,
    seed: int = 0,
    *,
    top_k: Sequence[int] = (20, 50),
    target_sum: float = 1e4,
    perturbed_centroid: pd.Series | None = None,
    gene_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Agreement of the ATEs of two random halves of the cells (measurement reliability).

    Every perturbation (and the controls) is split in half separately, so each half keeps all
    groups; the result is :func:`ate_metrics` of half A (as reference) against half B. Each
    half has half the cells, so this is a conservative ceiling for full-size estimates.
    """
    labels = _labels(perturbation_labels, counts.shape[0])
    rng = np.random.default_rng(seed)
    half_a, half_b = [], []
    for label, rows in pd.Series(labels).groupby(labels, sort=True).indices.items():
        members = rng.permutation(rows)
        if len(members) < 2:
            raise GenevaeInputError(
                f"Group {label!r} has {len(members)} cell; the split-half ceiling needs at least "
                "2 cells per perturbation. Drop the group or use more cells."
            )
        half_a.append(members[: len(members) // 2])
        half_b.append(members[len(members) // 2 :])
    rows_a, rows_b = np.sort(np.concatenate(half_a)), np.sort(np.concatenate(half_b))
    genes = _gene_names(counts, gene_names)
    effects = [
        observed_ate(
            _take_rows(counts, rows), labels[rows], control_label, target_sum, gene_names=genes
        )
        for rows in (rows_a, rows_b)
    ]
    return ate_metrics(effects[0], effects[1], top_k, perturbed_centroid)


# ---------------------------------------------------------------------- one-call report
UnseenBaseline = Literal["raise", "pooled"]


def _reference_and_train_rows(
    splits: np.ndarray, reference: str, train_split: str
) -> tuple[np.ndarray, np.ndarray]:
    reference_rows = (
        np.arange(len(splits)) if reference == "all" else np.flatnonzero(splits == reference)
    )
    train_rows = np.flatnonzero(splits == train_split)
    if len(reference_rows) == 0 or len(train_rows) == 0:
        raise GenevaeInputError(
            f"No cells in reference split {reference!r} or training split {train_split!r}; "
            f"the split labels present are {sorted(set(splits))}."
        )
    return reference_rows, train_rows


def score_ate_predictions(
    predictions: Mapping[str, pd.DataFrame],
    counts: Counts,
    perturbation_labels: Iterable,
    control_label: str,
    split: Iterable,
    *,
    gene_names: Sequence[str] | None = None,
    reference: str = "test",
    train_split: str = "train",
    top_k: Sequence[int] = (20, 50),
    seed: int = 0,
    baselines: bool = True,
    unseen: UnseenBaseline = "raise",
    linear_model: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Metrics (rows: predictor, columns: metric) of given ATE predictions and the baselines.

    ``predictions`` maps a predictor name to its perturbation × gene ATE table (e.g. from
    :func:`predicted_ate`); each must cover the perturbations observed in the ``reference``
    split (default the held-out "test" cells; "all" is the original, leaky all-cells
    reference). Every row gets :func:`ate_metrics` with the perturbed centroid of the
    ``train_split`` cells (Systema's reference). With ``baselines``, rows from the training
    cells are added (Ahlmann-Eltze et al. 2025; Systema): ``control_mean`` (no change),
    ``pooled_training_mean`` (the mean over training perturbations, Systema's perturbed mean),
    ``training_mean`` (each perturbation's own training cells), ``linear_model`` when
    ``linear_model`` holds its keyword arguments (e.g. ``{}`` for the paper's defaults;
    :func:`genevae.analysis.baselines.linear_perturbation_model`, which needs perturbation
    labels that are measured genes) and ``split_half_ceiling`` (two halves of the training
    cells). A
    perturbation without training cells (held out as unseen) has no training mean:
    ``unseen="raise"`` refuses, ``"pooled"`` predicts it by the pooled training mean.
    """
    splits = np.asarray(pd.Series(list(split)).astype(str))
    labels = _labels(perturbation_labels, counts.shape[0])
    if len(splits) != counts.shape[0]:
        raise GenevaeInputError(
            f"split has {len(splits)} entries but counts has {counts.shape[0]} rows."
        )
    if unseen not in ("raise", "pooled"):
        raise GenevaeInputError(f"unseen={unseen!r} must be 'raise' or 'pooled'.")
    genes = _gene_names(counts, gene_names)
    reference_rows, train_rows = _reference_and_train_rows(splits, reference, train_split)

    def means_of(rows: np.ndarray) -> pd.DataFrame:
        return pseudobulk(_take_rows(counts, rows), labels[rows], gene_names=genes)

    observed = ate_from_pseudobulk(means_of(reference_rows), control_label)
    training_means = means_of(train_rows)
    training = ate_from_pseudobulk(training_means, control_label)
    centroid = perturbed_centroid_ate(training)
    frames = {
        name: frame[frame.index.astype(str).isin(observed.index)]
        for name, frame in predictions.items()
    }
    if baselines:
        frames |= _baseline_predictions(training, observed, unseen)
    if baselines and linear_model is not None:
        frames["linear_model"] = linear_perturbation_model(
            training_means, control_label, list(observed.index), **linear_model
        )
    rows = {name: ate_metrics(observed, frame, top_k, centroid) for name, frame in frames.items()}
    if baselines:
        rows["split_half_ceiling"] = split_half_noise_ceiling(
            _take_rows(counts, train_rows),
            labels[train_rows],
            control_label,
            seed,
            top_k=top_k,
            perturbed_centroid=centroid,
            gene_names=genes,
        )
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("predictor")


def _baseline_predictions(
    training: pd.DataFrame, observed: pd.DataFrame, unseen: UnseenBaseline
) -> dict[str, pd.DataFrame]:
    """Control-mean, pooled training-mean and training-mean ATEs on ``observed``'s layout."""
    pooled_row = training.mean(axis=0).to_numpy()
    pooled = pd.DataFrame(
        np.broadcast_to(pooled_row, observed.shape), index=observed.index, columns=training.columns
    )
    per_perturbation = training.reindex(observed.index)
    missing = per_perturbation.index[per_perturbation.isna().any(axis=1)]
    if len(missing) and unseen == "raise":
        raise GenevaeInputError(
            f"Perturbations {list(map(str, missing))[:5]} have no training cells; baselines "
            "need them (pass unseen='pooled' to predict them by the pooled training mean)."
        )
    per_perturbation.loc[missing] = pooled.loc[missing].to_numpy()
    return {
        "control_mean": control_mean_baseline(observed),
        "pooled_training_mean": pooled,
        "training_mean": per_perturbation,
    }


def evaluate_perturbation_prediction(
    model: CountSampler,
    counts: Counts,
    perturbation_labels: Iterable,
    control_label: str,
    split: Iterable,
    dosage_per_perturbation: pd.DataFrame,
    *,
    gene_names: Sequence[str] | None = None,
    reference: str = "test",
    train_split: str = "train",
    top_k: Sequence[int] = (20, 50),
    n_particles: int = 2500,
    particles_per_batch: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics (rows: predictor, columns: metric) of the model and baselines on one reference.

    ``reference`` names the split whose cells form the observed ATE (default the held-out
    "test" cells; "all" reproduces the original, leaky all-cells reference). Baselines use the
    ``train_split`` cells: per-perturbation training mean, pooled training mean and control
    mean; the noise ceiling compares two halves of the training cells, as the independent
    reproduction did (its reliability check). See :func:`score_ate_predictions`.
    """
    splits = np.asarray(pd.Series(list(split)).astype(str))
    labels = _labels(perturbation_labels, counts.shape[0])
    genes = _gene_names(counts, gene_names)
    if len(splits) != counts.shape[0]:
        raise GenevaeInputError(
            f"split has {len(splits)} entries but counts has {counts.shape[0]} rows."
        )
    reference_rows, _ = _reference_and_train_rows(splits, reference, train_split)
    observed_labels = sorted(map(str, set(labels[reference_rows]) - {str(control_label)}))
    dosage = dosage_per_perturbation.set_axis(dosage_per_perturbation.index.astype(str), axis=0)
    unknown = sorted(set(observed_labels) - set(dosage.index))
    if unknown:
        raise GenevaeInputError(
            f"Perturbations {unknown[:5]} have cells but no row in dosage_per_perturbation; "
            "add their dosage rows (the node columns the model was trained on)."
        )
    model_ate = predicted_ate(
        model,
        dosage.loc[observed_labels],
        list(genes),
        n_particles=n_particles,
        particles_per_batch=particles_per_batch,
        seed=seed,
    )
    return score_ate_predictions(
        {"model": model_ate},
        counts,
        labels,
        control_label,
        splits,
        gene_names=genes,
        reference=reference,
        train_split=train_split,
        top_k=top_k,
        seed=seed,
    )
