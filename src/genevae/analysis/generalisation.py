"""Does a gene-module model generalise to cells it never saw? (VEGA paper, Fig. 4.)

Two experiments, both scored by (a) the overlap of the top-k differential modules (ranked by
|ln Bayes factor|) and (b) the R² of the mean reconstructed against the mean observed
profile, each over repeated resamples of the cells:

- **biological** (:func:`biological_generalisation`): for each cell type, a model is trained
  without that cell type's stimulated cells, which are then encoded out of sample. Its
  stimulated-vs-control modules for that cell type are compared with those of the model
  trained on all cells. The paper's mean top-50 overlap over the Kang cell types is 0.715.
- **technical** (:func:`technical_generalisation`): a model trained on one study encodes
  another; per cell type, its one-vs-rest modules on the second study are compared with those
  of a model trained on the second study itself. With only one study at hand,
  :func:`split_into_studies` cuts it into two halves of cells stratified by the given labels;
  such halves share donors and protocol, so this is an optimistic bound on cross-study
  transfer, not a replacement for it.

Training is injected (a :data:`Trainer`), so this module stays free of the training stack and
can be tested with a cheap stand-in model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from genevae.analysis.bayes_factor import GaussianEncoder, differential_activity
from genevae.analysis.metrics import mean_profile_r2, top_k_overlap
from genevae.errors import GenevaeInputError

PAPER_MEAN_TOP50_OVERLAP = 0.715
"""VEGA Fig. 4 (Kang, cell type held out): mean fraction of shared top-50 |ln BF| modules."""


@dataclass(frozen=True)
class Posterior:
    """One model's view of a set of cells: posterior means/log-variances and reconstructions.

    ``reconstruction`` is the decoded posterior mean (cells × genes), on the scale of the
    observed expression it is compared with.
    """

    mean: np.ndarray
    logvar: np.ndarray
    reconstruction: np.ndarray
    module_names: list[str]

    def __post_init__(self) -> None:
        n_cells = len(self.mean)
        if self.mean.shape != self.logvar.shape or len(self.reconstruction) != n_cells:
            raise GenevaeInputError(
                f"Posterior arrays disagree: mean {self.mean.shape}, logvar "
                f"{self.logvar.shape}, reconstruction {self.reconstruction.shape}."
            )
        if len(self.module_names) != self.mean.shape[1]:
            raise GenevaeInputError(
                f"{len(self.module_names)} module names for {self.mean.shape[1]} latent nodes."
            )


Encoder = Callable[[ad.AnnData], Posterior]
"""Encodes cells (AnnData with the training genes) with one trained model."""

Trainer = Callable[[ad.AnnData, int, str], Encoder]
"""Trains a model on the given cells with the given seed and returns its encoder; the third
argument names the fit (e.g. ``held_out_B``) for logs and tracking runs."""


def standard_normal_draws(seed: int) -> Callable[[tuple[int, int]], np.ndarray]:
    """N(0, 1) draws of a requested shape from a generator seeded with ``seed``.

    Each shape is drawn once and kept: two models compared on the same cells with the same
    seed get the very draws they would each have drawn, at the cost of one draw.
    """
    drawn: dict[tuple[int, int], np.ndarray] = {}

    def draws(shape: tuple[int, int]) -> np.ndarray:
        if shape not in drawn:
            drawn[shape] = np.random.default_rng(seed).standard_normal(shape)
        return drawn[shape]

    return draws


def posterior_sampler(
    posterior: Posterior,
    rows: np.ndarray,
    seed: int,
    noise: Callable[[tuple[int, int]], np.ndarray] | None = None,
) -> GaussianEncoder:
    """An ``encode_sample`` for :func:`differential_activity` over ``rows`` of ``posterior``.

    Local index i maps to cell ``rows[i]``; each call draws z = μ + σ·ε with ε from a
    generator seeded with ``seed``, as the model's own ``sample_latent`` in eval mode does
    (``noise``: shared :func:`standard_normal_draws` of that seed); ``moments`` gives μ and σ
    for the analytic estimator.
    """
    noise = noise or standard_normal_draws(seed)

    def moments(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells = rows[np.asarray(indices)]
        return posterior.mean[cells], np.exp(0.5 * posterior.logvar[cells])

    def encode_sample(indices: np.ndarray) -> np.ndarray:
        mean, sd = moments(indices)
        return mean + sd * noise(mean.shape)

    return GaussianEncoder(encode_sample, moments)


def module_priority(bf_table: pd.DataFrame, exclude_prefix: str | None = None) -> pd.Series:
    """Module → priority score (higher first) ranking by |ln BF|, ties broken by |mean diff|.

    With many cells, |ln BF| saturates (≈ 27.6 when every pair agrees), so the tie-break keeps
    the top-k well defined. Modules starting with ``exclude_prefix`` (e.g. VEGA's fully
    connected ``UNANNOTATED`` nodes) are left out.
    """
    table = bf_table
    if exclude_prefix:
        table = table[~table["module"].astype(str).str.startswith(exclude_prefix)]
    order = np.lexsort((-table["mean_diff"].abs().to_numpy(), -table["ln_bf"].abs().to_numpy()))
    modules = table["module"].to_numpy()[order]
    return pd.Series(np.arange(len(modules), 0, -1, dtype=float), index=modules)


def _mean_of_rows(matrix: np.ndarray | sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """``matrix[rows].mean(axis=0)`` (rows repeat) from each distinct row once, never dense.

    A bootstrap of 2,000 draws from a cell type reads each of its cells once, weighted by
    how often it was drawn, instead of densifying 2,000 × genes values per model.
    """
    distinct, counts = np.unique(rows, return_counts=True)
    weights = counts.astype(np.float64) / len(rows)
    return np.asarray(weights @ matrix[distinct], dtype=np.float64).ravel()


def _compare_once(
    posteriors: tuple[Posterior, Posterior],
    observed: np.ndarray | sp.csr_matrix,
    group_rows: np.ndarray,
    other_rows: np.ndarray,
    rng: np.random.Generator,
    settings: dict[str, Any],
) -> dict[str, float]:
    """One resample: bootstrap the group's cells, score both models on the same cells.

    Both models see the same cells and the same posterior noise (one draw, shared), and R²
    compares mean profiles, so only the drawn cells' means are computed.
    """
    sampled = rng.choice(group_rows, size=settings["n_cells"] or len(group_rows), replace=True)
    observed_mean = _mean_of_rows(observed, sampled)[None, :]
    rows = np.concatenate([sampled, other_rows])
    labels = np.array(["group"] * len(sampled) + ["other"] * len(other_rows))
    seed = int(rng.integers(0, 2**31 - 1))
    noise = standard_normal_draws(seed)
    priorities, r2 = [], []
    for posterior in posteriors:
        table = differential_activity(
            posterior_sampler(posterior, rows, seed, noise),
            labels,
            "group",
            "other",
            module_names=posterior.module_names,
            seed=seed,
            **settings["bayes_factor"],
        )
        priorities.append(module_priority(table, settings["exclude_prefix"]))
        reconstructed_mean = _mean_of_rows(posterior.reconstruction, sampled)[None, :]
        r2.append(mean_profile_r2(observed_mean, reconstructed_mean, kind=settings["r2_kind"]))
    return {
        "r2_reference": r2[0],
        "r2_generalised": r2[1],
        "top_k_overlap": top_k_overlap(priorities[0], priorities[1], settings["top_k"]),
    }


def compare_models_on_group(
    reference: Posterior,
    generalised: Posterior,
    observed: np.ndarray | sp.spmatrix,
    group_rows: np.ndarray,
    other_rows: np.ndarray,
    *,
    n_resamples: int = 100,
    n_cells: int | None = 2000,
    top_k: int = 50,
    seed: int = 0,
    r2_kind: str = "pearson_squared",
    exclude_prefix: str | None = None,
    bayes_factor: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Repeated-resample comparison of two models on one group of cells against other cells.

    Each resample draws ``n_cells`` of the group's cells with replacement (``None``: as many
    as the group has; the paper drew 2,000), computes group-vs-other Bayes factors under both
    models with the same random draws, and records the top-``top_k`` module overlap and each
    model's R² of the mean reconstruction of the drawn cells.

    Returns:
        One row per resample: resample, r2_reference, r2_generalised, top_k_overlap.
    """
    if reference.module_names != generalised.module_names:
        raise GenevaeInputError("The two models have different modules; compare like with like.")
    if len(group_rows) == 0 or len(other_rows) == 0:
        raise GenevaeInputError("Both the group and the comparison cells need at least one cell.")
    if n_resamples < 1:
        raise GenevaeInputError(f"n_resamples must be >= 1, got {n_resamples}.")
    settings = {
        "n_cells": n_cells,
        "top_k": top_k,
        "r2_kind": r2_kind,
        "exclude_prefix": exclude_prefix,
        "bayes_factor": {k: v for k, v in (bayes_factor or {}).items() if k != "seed"},
    }
    rows_of = sp.csr_matrix(observed) if sp.issparse(observed) else np.asarray(observed)
    rng = np.random.default_rng(seed)
    rows = [
        {"resample": r}
        | _compare_once((reference, generalised), rows_of, group_rows, other_rows, rng, settings)
        for r in range(n_resamples)
    ]
    return pd.DataFrame(rows)


def _labels(obs: pd.DataFrame, key: str) -> np.ndarray:
    if key not in obs.columns:
        raise GenevaeInputError(f"obs has no column {key!r}; available: {list(obs.columns)}.")
    return obs[key].astype(str).to_numpy()


def held_out_rows(
    obs: pd.DataFrame, cell_type_key: str, cell_type: str, condition_key: str, stimulated: str
) -> np.ndarray:
    """Boolean mask of the stimulated cells of one cell type (what the held-out model never sees)."""
    cell_types, conditions = _labels(obs, cell_type_key), _labels(obs, condition_key)
    for key, values, wanted in (
        (cell_type_key, cell_types, cell_type),
        (condition_key, conditions, stimulated),
    ):
        if wanted not in set(values):
            raise GenevaeInputError(
                f"{wanted!r} is not a level of obs[{key!r}]; available: {sorted(set(values))}."
            )
    return (cell_types == cell_type) & (conditions == stimulated)


def biological_generalisation(
    adata: ad.AnnData,
    trainer: Trainer,
    cell_types: Sequence[str],
    *,
    cell_type_key: str = "cell_type",
    condition_key: str = "condition",
    stimulated: str = "stimulated",
    control: str = "control",
    seed: int = 0,
    full_model: Encoder | None = None,
    **comparison: Any,
) -> pd.DataFrame:
    """VEGA Fig. 4: per cell type, full model vs a model that never saw its stimulated cells.

    For each cell type, a model is trained (``trainer(cells, seed, name)``) on all cells except
    that type's stimulated ones; both models then encode the type's stimulated and control
    cells, and :func:`compare_models_on_group` scores stimulated vs control under both.
    ``full_model`` reuses an already trained encoder (otherwise one is trained on all cells
    with the same trainer and seed). ``comparison`` goes to :func:`compare_models_on_group`.

    Returns:
        One row per cell type and resample: cell_type, n_stimulated, n_control, resample,
        r2_full, r2_held_out, top_k_overlap.
    """
    if not cell_types:
        raise GenevaeInputError("cell_types is empty; name at least one cell type to hold out.")
    full = full_model if full_model is not None else trainer(adata, seed, "full")
    conditions = _labels(adata.obs, condition_key)
    tables = []
    for cell_type in cell_types:
        hidden = held_out_rows(adata.obs, cell_type_key, cell_type, condition_key, stimulated)
        in_type = _labels(adata.obs, cell_type_key) == cell_type
        control_cells = in_type & (conditions == control)
        if not control_cells.any():
            raise GenevaeInputError(f"Cell type {cell_type!r} has no {control!r} cells to compare.")
        cells = adata[in_type]
        held_out = trainer(adata[~hidden], seed, f"held_out_{cell_type}")
        local_conditions = conditions[in_type]
        table = compare_models_on_group(
            full(cells),
            held_out(cells),
            cells.X,
            np.flatnonzero(local_conditions == stimulated),
            np.flatnonzero(local_conditions == control),
            seed=seed,
            **comparison,
        )
        table.insert(0, "cell_type", cell_type)
        table.insert(1, "n_stimulated", int(hidden.sum()))
        table.insert(2, "n_control", int(control_cells.sum()))
        tables.append(table)
    return pd.concat(tables, ignore_index=True).rename(
        columns={"r2_reference": "r2_full", "r2_generalised": "r2_held_out"}
    )


def split_into_studies(
    obs: pd.DataFrame, stratify_keys: Sequence[str], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the cells ("study A", "study B"), stratified by the given labels.

    Within every combination of ``stratify_keys`` levels, cells are shuffled with ``seed``
    and split in half (an odd cell goes to A), so both halves keep the same composition.
    Returns the sorted row indices of A and B.
    """
    groups = (
        pd.Series(["all"] * len(obs), index=obs.index)
        if not stratify_keys
        else obs[list(stratify_keys)].astype(str).agg("|".join, axis=1)
    )
    rng = np.random.default_rng(seed)
    first, second = [], []
    for rows in pd.Series(np.arange(len(obs))).groupby(groups.to_numpy()).groups.values():
        shuffled = rng.permutation(np.asarray(rows))
        half = (len(shuffled) + 1) // 2
        first.append(shuffled[:half])
        second.append(shuffled[half:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def technical_generalisation(
    adata: ad.AnnData,
    trainer: Trainer,
    *,
    cell_type_key: str = "cell_type",
    study_key: str | None = None,
    studies: tuple[str, str] | None = None,
    stratify_keys: Sequence[str] = ("cell_type", "condition"),
    min_cells: int = 20,
    seed: int = 0,
    **comparison: Any,
) -> pd.DataFrame:
    """A model trained on study A encodes study B; per cell type, compare with B's own model.

    Studies are ``obs[study_key]`` levels ``studies = (A, B)`` when given; otherwise the data
    are split into two stratified halves (:func:`split_into_studies`). Per cell type of B with
    at least ``min_cells`` cells, one-vs-rest Bayes factors under the in-sample model (trained
    on B) and the out-of-sample model (trained on A) are compared by
    :func:`compare_models_on_group`.

    Returns:
        One row per cell type and resample: cell_type, n_cells, resample, r2_in_sample,
        r2_out_of_sample, top_k_overlap.
    """
    rows_a, rows_b = _study_rows(adata.obs, study_key, studies, stratify_keys, seed)
    study_b = adata[rows_b]
    in_sample = trainer(study_b, seed, "study_b")(study_b)
    out_of_sample = trainer(adata[rows_a], seed, "study_a")(study_b)
    cell_types = _labels(study_b.obs, cell_type_key)
    tables = []
    for cell_type in sorted(set(cell_types)):
        members = cell_types == cell_type
        if members.sum() < min_cells or members.all():
            continue
        table = compare_models_on_group(
            in_sample,
            out_of_sample,
            study_b.X,
            np.flatnonzero(members),
            np.flatnonzero(~members),
            seed=seed,
            **comparison,
        )
        table.insert(0, "cell_type", cell_type)
        table.insert(1, "n_cells", int(members.sum()))
        tables.append(table)
    if not tables:
        raise GenevaeInputError(
            f"No cell type of the second study has >= min_cells={min_cells} cells; lower min_cells."
        )
    return pd.concat(tables, ignore_index=True).rename(
        columns={"r2_reference": "r2_in_sample", "r2_generalised": "r2_out_of_sample"}
    )


def _study_rows(
    obs: pd.DataFrame,
    study_key: str | None,
    studies: tuple[str, str] | None,
    stratify_keys: Sequence[str],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    if study_key is None:
        return split_into_studies(obs, stratify_keys, seed)
    if studies is None or len(studies) != 2:
        raise GenevaeInputError("With study_key, name the two studies as studies: [train, test].")
    labels = _labels(obs, study_key)
    rows = [np.flatnonzero(labels == study) for study in studies]
    if any(len(r) == 0 for r in rows):
        raise GenevaeInputError(
            f"studies {list(studies)} must both be levels of obs[{study_key!r}]: "
            f"{sorted(set(labels))}."
        )
    return rows[0], rows[1]


def summarise_resamples(
    results: pd.DataFrame, by: str | Sequence[str], columns: Sequence[str]
) -> pd.DataFrame:
    """Mean, SD and count of each column per group (one row per group), e.g. per cell type."""
    missing = [c for c in [*np.atleast_1d(by), *columns] if c not in results.columns]
    if missing:
        raise GenevaeInputError(f"results lacks columns {missing}.")
    summary = results.groupby(by, sort=True)[list(columns)].agg(["mean", "std", "count"])
    summary.columns = [f"{column}_{stat}" for column, stat in summary.columns]
    return summary.reset_index()
