"""Inputs of GPO-VAE built from a Perturb-seq AnnData of raw counts.

GPO-VAE (Baek et al., Bioinformatics 2025) needs, per cell and aligned with ``adata.obs``:

- the GRN nodes: every perturbed gene (sorted) then the "extra" genes, one top-ranked strongly
  changed gene per perturbation (``extra_node_genes``), and the dosage matrix over these nodes;
- ΔX = |x − x_matched control| on log1p(normalize_total) expression of the nodes, with the
  control found by entropic optimal transport per split and perturbation (the GRN-aligned loss);
- CRADLE-VAE's QC flags (MAD outliers) and counterfactual targets (median of QC-failing cells);
- the library size and the per-perturbation 1/count weights of the plated ELBO terms.

Everything here is plain numpy/pandas/scanpy/POT so it can run from a notebook.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import ot
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from genevae.errors import GenevaeInputError
from genevae.preprocessing.wilcoxon import rank_genes_vs_reference

DE_COLUMNS = ("group", "names", "logfoldchanges", "pvals_adj", "scores")
FilterMode = Literal["paper", "original_precedence_bug"]
MatchOn = Literal["perturbed_genes", "node_genes"]
MedianMode = Literal["midpoint", "lower"]
Sampling = Literal["without_replacement", "with_replacement"]
FitOn = Literal["training_cells", "all_cells"]
_CF_CHUNK = 64  # cells whose counterfactual medians are computed in one vectorised block


@dataclass(frozen=True)
class GPOInputs:
    """Everything GPO-VAE trains on besides the counts; every array is aligned with adata.obs.

    ``dosage``/``delta_x`` are cells × nodes (float32), columns ordered as ``node_names``: the
    ``n_perturbed`` perturbed genes first (sorted), then the extra genes (sorted). ``cf_x`` is
    cells × genes CSR (medians of counts are mostly zero). ``matched_control`` holds the row
    of each perturbed cell's OT-matched control (-1 for controls).
    """

    node_names: list[str]
    n_perturbed: int
    perturbation: np.ndarray
    dosage: np.ndarray
    matched_control: np.ndarray
    delta_x: np.ndarray
    qc: pd.DataFrame
    cf_x: sp.csr_matrix
    has_cf: np.ndarray
    library: np.ndarray
    perturbation_weight: np.ndarray
    split: np.ndarray


def _require_columns(table: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise GenevaeInputError(
            f"{name} lacks column(s) {missing}; it has {list(table.columns)}. "
            f"Pass a table with columns {list(columns)}."
        )


def _require_obs(adata: ad.AnnData, key: str, parameter: str) -> None:
    if key not in adata.obs.columns:
        raise GenevaeInputError(
            f"{parameter}={key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})."
        )


def _as_counts(
    adata: ad.AnnData, layer: str | None, parameter: str = "counts_layer"
) -> sp.csr_matrix:
    """Raw counts as float32 CSR; negative values mean the matrix is not counts."""
    if layer is not None and layer not in adata.layers:
        raise GenevaeInputError(
            f"{parameter}={layer!r} is not in adata.layers ({list(adata.layers)})."
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    counts = sp.csr_matrix(matrix, dtype=np.float32)
    if counts.nnz and counts.data.min() < 0:
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        raise GenevaeInputError(
            f"{where} has negative values; GPO-VAE inputs need raw UMI counts (set {parameter})."
        )
    return counts


def log_normalise_counts(
    counts: sp.spmatrix | np.ndarray, target_sum: float | None = None
) -> sp.csr_matrix:
    """log1p of counts scaled to ``target_sum`` per cell; the default, the median library size,
    is scanpy's ``normalize_total()`` default, which GPO-VAE used for ΔX and OT matching."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    if target_sum is None:
        target_sum = _median_library_size(counts)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    scaled = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ counts)
    return scaled.log1p().astype(np.float32)


def rank_genes_long(
    adata: ad.AnnData,
    groupby: str,
    reference: str,
    method: str = "wilcoxon",
    layer: str | None = None,
) -> pd.DataFrame:
    """scanpy ``rank_genes_groups`` against ``reference``, as one long table for all groups.

    ``adata`` must hold log-normalised expression (in X or ``layer``); it is not modified.
    The Wilcoxon test (all genes of every group) is computed by
    :func:`~genevae.preprocessing.wilcoxon.rank_genes_vs_reference`, linear in cells; other
    methods run scanpy on a light AnnData sharing the matrix. Columns: group, names, scores,
    logfoldchanges, pvals, pvals_adj; rows keep scanpy's order (score descending per group).
    """
    _require_obs(adata, groupby, "groupby")
    labels = adata.obs[groupby].astype(str)
    if reference not in set(labels):
        raise GenevaeInputError(
            f"reference={reference!r} is not a value of adata.obs[{groupby!r}]."
        )
    matrix = adata.X if layer is None else adata.layers[layer]
    if method == "wilcoxon":
        return rank_genes_vs_reference(matrix, labels.to_numpy(), reference, adata.var_names, None)
    shell = ad.AnnData(
        X=matrix,
        obs=pd.DataFrame({groupby: pd.Categorical(labels)}, index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    with warnings.catch_warnings():  # scanpy fills its result frame column by column
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        sc.tl.rank_genes_groups(shell, groupby, reference=reference, method=method)
    result = shell.uns["rank_genes_groups"]
    groups = list(result["names"].dtype.names)
    columns = ["names", "scores", "logfoldchanges", "pvals", "pvals_adj"]
    frames = [
        pd.DataFrame({"group": group, **{c: np.asarray(result[c][group]) for c in columns}})
        for group in groups
    ]
    return pd.concat(frames, ignore_index=True)


def extra_node_genes(
    de_table: pd.DataFrame,
    perturbed_genes: Sequence[str],
    lfc_threshold: float,
    padj_threshold: float = 0.01,
    filter_mode: FilterMode = "paper",
) -> list[str]:
    """Extra GRN nodes: per perturbation, the top-scoring gene that changed strongly.

    ``filter_mode="paper"`` keeps rows with |logFC| > ``lfc_threshold`` AND padj < threshold.
    ``"original_precedence_bug"`` reproduces the K562/RPE1 code, whose missing parentheses
    read ``(lfc < -thr) | ((lfc > thr) & (padj < thr_p))``, so down-regulated genes pass with
    any p-value. Among kept rows, the highest ``scores`` wins (scanpy's ranking); perturbations
    without a hit are skipped. Returns the sorted hits that are not perturbed genes themselves.
    """
    _require_columns(de_table, DE_COLUMNS, "de_table")
    if lfc_threshold <= 0:
        raise GenevaeInputError(f"lfc_threshold={lfc_threshold} must be > 0 (|log2 FC| cut-off).")
    lfc = de_table["logfoldchanges"].astype(float)
    padj = de_table["pvals_adj"].astype(float)
    if filter_mode == "paper":
        keep = (lfc.abs() > lfc_threshold) & (padj < padj_threshold)
    elif filter_mode == "original_precedence_bug":
        keep = (lfc < -lfc_threshold) | ((lfc > lfc_threshold) & (padj < padj_threshold))
    else:
        raise GenevaeInputError(
            f"filter_mode={filter_mode!r} is unknown; use 'paper' or 'original_precedence_bug'."
        )
    hits = de_table[keep & de_table["group"].astype(str).isin(set(perturbed_genes))]
    ranked = hits.sort_values("scores", ascending=False, kind="stable")
    top = ranked.groupby(ranked["group"].astype(str), sort=False).head(1)["names"].astype(str)
    return sorted(set(top) - set(perturbed_genes))


def dosage_matrix(
    perturbation_genes_per_cell: pd.Series, node_names: Sequence[str], control_label: str
) -> np.ndarray:
    """One-hot dosage over GRN nodes (cells × nodes); controls and extra nodes stay zero."""
    labels = pd.Series(perturbation_genes_per_cell).astype(str).to_numpy()
    column = {name: j for j, name in enumerate(node_names)}
    perturbed = labels != control_label
    unknown = sorted(set(labels[perturbed]) - set(column))
    if unknown:
        raise GenevaeInputError(
            f"perturbation labels {unknown[:10]} are not in node_names; every perturbed gene "
            f"must be a GRN node (or equal control_label={control_label!r})."
        )
    dosage = np.zeros((labels.size, len(node_names)), dtype=np.float32)
    rows = np.flatnonzero(perturbed)
    dosage[rows, [column[label] for label in labels[perturbed]]] = 1.0
    return dosage


def match_controls_ot(
    x_perturbed: np.ndarray, x_control: np.ndarray, reg: float = 1.0, cost_scale: float = 100.0
) -> np.ndarray:
    """Index into ``x_control`` of each perturbed cell's control, by entropic OT (Sinkhorn).

    Uniform marginals, Euclidean cost divided by ``cost_scale``, entropic regularisation
    ``reg``; each perturbed cell takes the control receiving its largest transport mass.
    """
    x_perturbed = np.asarray(x_perturbed, dtype=np.float64)
    x_control = np.asarray(x_control, dtype=np.float64)
    if x_perturbed.shape[0] == 0 or x_control.shape[0] == 0:
        raise GenevaeInputError(
            "match_controls_ot needs at least one perturbed and one control cell."
        )
    if x_perturbed.shape[1] != x_control.shape[1]:
        raise GenevaeInputError(
            f"x_perturbed has {x_perturbed.shape[1]} features but x_control has "
            f"{x_control.shape[1]}; both must use the same genes."
        )
    if reg <= 0 or cost_scale <= 0:
        raise GenevaeInputError(f"reg={reg} and cost_scale={cost_scale} must both be > 0.")
    cost = ot.dist(x_perturbed, x_control, metric="euclidean") / cost_scale
    mass_perturbed = np.full(x_perturbed.shape[0], 1.0 / x_perturbed.shape[0])
    mass_control = np.full(x_control.shape[0], 1.0 / x_control.shape[0])
    plan = ot.sinkhorn(mass_perturbed, mass_control, cost, reg)
    return np.asarray(plan.argmax(axis=1), dtype=np.int64)


def _dense_rows(matrix: sp.spmatrix | np.ndarray, rows: np.ndarray) -> np.ndarray:
    block = matrix[rows]
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def match_controls_per_split(
    features: sp.spmatrix | np.ndarray,
    perturbation: Sequence[str],
    split: Sequence[str],
    control_label: str,
    reg: float = 1.0,
    cost_scale: float = 100.0,
) -> np.ndarray:
    """Matched control row (global index) per cell, by OT within each split and perturbation.

    ``features`` is cells × genes log1p(normalize_total) expression. Controls get -1, and a
    perturbed cell is only ever matched to a control of its own split (no leakage).
    """
    labels = np.asarray(perturbation).astype(str)
    splits = np.asarray(split).astype(str)
    if labels.size != features.shape[0] or splits.size != features.shape[0]:
        raise GenevaeInputError(
            f"perturbation ({labels.size}) and split ({splits.size}) must have one entry per "
            f"row of features ({features.shape[0]})."
        )
    matched = np.full(labels.size, -1, dtype=np.int64)
    cells_of = pd.Series(np.arange(labels.size)).groupby([splits, labels], sort=False).indices
    for split_name in pd.unique(splits):
        controls = cells_of.get((split_name, control_label), np.empty(0, dtype=np.int64))
        groups = [
            cells
            for (group_split, label), cells in cells_of.items()
            if group_split == split_name and label != control_label
        ]
        if groups and controls.size == 0:
            raise GenevaeInputError(
                f"split {str(split_name)!r} has perturbed cells but no {control_label!r} controls; "
                "every split needs controls to match against."
            )
        x_control = _dense_rows(features, controls)
        for cells in groups:
            local = match_controls_ot(_dense_rows(features, cells), x_control, reg, cost_scale)
            matched[cells] = controls[local]
    return matched


def delta_x(log_norm_nodes: sp.spmatrix | np.ndarray, matched_idx: np.ndarray) -> np.ndarray:
    """|x − x_matched| per cell over the node genes; unmatched cells (-1) and NaN give 0."""
    dense = log_norm_nodes.toarray() if sp.issparse(log_norm_nodes) else np.asarray(log_norm_nodes)
    dense = dense.astype(np.float32)
    matched_idx = np.asarray(matched_idx, dtype=np.int64)
    if matched_idx.size != dense.shape[0]:
        raise GenevaeInputError(
            f"matched_idx has {matched_idx.size} entries for {dense.shape[0]} cells."
        )
    delta = np.zeros_like(dense)
    rows = np.flatnonzero(matched_idx >= 0)
    delta[rows] = np.abs(dense[rows] - dense[matched_idx[rows]])
    return np.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0)


def qc_metrics(
    counts: sp.spmatrix | np.ndarray,
    var_names: Sequence[str],
    hb_pattern: str = r"^HB[AB]",
) -> pd.DataFrame:
    """Per-cell total counts, detected genes and % counts from MT-, RPS/RPL and haemoglobin genes.

    ``hb_pattern`` defaults to HBA*/HBB*; CRADLE-VAE used ``^HB[^(P)]`` (every HB* but HBP1),
    which also counts the fetal/embryonic globins (HBG, HBE, HBZ) that K562 cells express.
    """
    counts = sp.csr_matrix(counts, dtype=np.float32)
    names = pd.Index(var_names).astype(str).str.upper()
    totals = np.asarray(counts.sum(axis=1)).ravel()

    def percent(mask: np.ndarray) -> np.ndarray:
        part = np.asarray(counts[:, mask].sum(axis=1)).ravel()
        return np.divide(100.0 * part, totals, out=np.zeros_like(totals), where=totals > 0)

    return pd.DataFrame(
        {
            "total_counts": totals,
            "n_genes": np.asarray((counts > 0).sum(axis=1)).ravel().astype(np.float32),
            "pct_counts_mt": percent(np.asarray(names.str.startswith("MT-"))),
            "pct_counts_ribo": percent(np.asarray(names.str.startswith(("RPS", "RPL")))),
            "pct_counts_hb": percent(np.asarray(names.str.contains(hb_pattern, regex=True))),
        }
    )


_LOW_OUTLIER = ("total_counts", "n_genes")
_HIGH_OUTLIER = ("pct_counts_mt", "pct_counts_ribo", "pct_counts_hb")


def mad_thresholds(metrics: pd.DataFrame, n_mads: float = 3.0) -> dict[str, float]:
    """Outlier cut-offs: median − n·MAD for counts and genes, median + n·MAD for percentages.

    MAD is the raw median absolute deviation (not scaled by 1.4826), as in CRADLE-VAE.
    """
    _require_columns(metrics, _LOW_OUTLIER + _HIGH_OUTLIER, "metrics")
    thresholds = {}
    for column in _LOW_OUTLIER + _HIGH_OUTLIER:
        values = metrics[column].to_numpy(dtype=float)
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        sign = -1.0 if column in _LOW_OUTLIER else 1.0
        thresholds[column] = median + sign * n_mads * mad
    return thresholds


def qc_flags(
    adata: ad.AnnData,
    n_mads: float = 3.0,
    layer: str | None = None,
    thresholds: dict[str, float] | None = None,
    predicted_doublet: np.ndarray | None = None,
    hb_pattern: str = r"^HB[AB]",
) -> pd.DataFrame:
    """CRADLE-VAE QC flags (0/1) per cell and ``total_qc`` = 1 if any flag is set.

    Flags: low total counts, low detected genes (below median − n·MAD), high % MT-, RPS/RPL
    and haemoglobin counts (above median + n·MAD). Pass ``thresholds`` (from
    ``mad_thresholds`` on training cells) to score other cells, e.g. generated ones, with the
    same cut-offs. The original also flagged scrublet doublets; doublet calling is left to the
    caller (``sc.pp.scrublet``), whose boolean result can be given as ``predicted_doublet``.
    """
    metrics = qc_metrics(_as_counts(adata, layer, "layer"), adata.var_names, hb_pattern)
    cut = mad_thresholds(metrics, n_mads) if thresholds is None else thresholds
    flags = pd.DataFrame(index=adata.obs_names)
    for column in _LOW_OUTLIER:
        flags[f"qc_{column}"] = (metrics[column].to_numpy() < cut[column]).astype(np.int8)
    for column in _HIGH_OUTLIER:
        flags[f"qc_{column}"] = (metrics[column].to_numpy() > cut[column]).astype(np.int8)
    if predicted_doublet is not None:
        doublet = np.asarray(predicted_doublet, dtype=bool)
        if doublet.size != adata.n_obs:
            raise GenevaeInputError(
                f"predicted_doublet has {doublet.size} entries for {adata.n_obs} cells."
            )
        flags["qc_predicted_doublet"] = doublet.astype(np.int8)
    flags["total_qc"] = (flags.sum(axis=1) > 0).astype(np.int8)
    return flags


def _median(values: np.ndarray, axis: int, mode: MedianMode) -> np.ndarray:
    """Median along ``axis``: midpoint of the two middle values, or the lower one (torch)."""
    if mode == "midpoint":
        return np.median(values, axis=axis)
    k = (values.shape[axis] - 1) // 2
    return np.take(np.partition(values, k, axis=axis), k, axis=axis)


def counterfactual_targets(
    counts: sp.spmatrix | np.ndarray,
    qc: np.ndarray,
    perturbation: Sequence[str],
    split: Sequence[str],
    n_max: int = 50,
    seed: int = 0,
    median: MedianMode = "midpoint",
    sampling: Sampling = "without_replacement",
) -> tuple[sp.csr_matrix, np.ndarray]:
    """CRADLE-VAE counterfactual counts: per cell, the median of up to ``n_max`` random
    QC-failing cells with the same perturbation in the same split; zeros where none fail.

    Each cell draws its own subset. The original drew with replacement
    (``np.random.choice`` default) and took torch's lower median; ``sampling`` and ``median``
    select that behaviour, the defaults follow the paper's wording. Returns (cells × genes
    CSR float32, has_cf boolean per cell).
    """
    counts = sp.csr_matrix(counts, dtype=np.float32)
    failing = np.asarray(qc).astype(bool).ravel()
    labels = np.asarray(perturbation).astype(str)
    splits = np.asarray(split).astype(str)
    if not failing.size == labels.size == splits.size == counts.shape[0]:
        raise GenevaeInputError(
            f"qc ({failing.size}), perturbation ({labels.size}) and split ({splits.size}) must "
            f"each have one entry per cell ({counts.shape[0]})."
        )
    if n_max < 1 or median not in ("midpoint", "lower"):
        raise GenevaeInputError(f"n_max={n_max} must be >= 1 and median in 'midpoint'/'lower'.")
    if sampling not in ("without_replacement", "with_replacement"):
        raise GenevaeInputError(
            f"sampling={sampling!r} must be 'without_replacement' or 'with_replacement'."
        )
    rng = np.random.default_rng(seed)
    replace = sampling == "with_replacement"
    groups = pd.DataFrame({"split": splits, "label": labels}).groupby(
        ["split", "label"], sort=False
    )
    order, blocks = [], []
    for cells in groups.indices.values():
        pool = _dense_rows(counts, cells[failing[cells]])
        order.append(cells)
        if pool.shape[0] == 0:
            blocks.append(sp.csr_matrix((cells.size, counts.shape[1]), dtype=np.float32))
        elif pool.shape[0] <= n_max and not replace:
            row = sp.csr_matrix(_median(pool, 0, median)[None, :].astype(np.float32))
            blocks.append(row[np.zeros(cells.size, dtype=np.int64)])
        else:
            size = min(pool.shape[0], n_max)
            draws = np.stack([rng.choice(pool.shape[0], size, replace=replace) for _ in cells])
            chunks = [
                _median(pool[draws[i : i + _CF_CHUNK]], 1, median)
                for i in range(0, cells.size, _CF_CHUNK)
            ]
            blocks.append(sp.csr_matrix(np.concatenate(chunks).astype(np.float32)))
    stacked = sp.vstack(blocks, format="csr")
    position = np.empty(labels.size, dtype=np.int64)
    position[np.concatenate(order)] = np.arange(labels.size)
    has_cf = np.zeros(labels.size, dtype=bool)
    for cells in groups.indices.values():
        has_cf[cells] = failing[cells].any()
    return stacked[position], has_cf


def perturbation_weights(labels: Sequence[str]) -> pd.Series:
    """1 / number of cells per perturbation label (controls are one group of their own).

    These reweight the plated log p − log q terms per cell so that a mini-batch average
    estimates the full-data ELBO (SAMS-VAE).
    """
    counts = pd.Series(np.asarray(labels).astype(str)).value_counts()
    return (1.0 / counts).rename("perturbation_weight")


def _weights_within_split(labels: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Per cell, 1/count of its perturbation in its own split (SAMS-VAE counts per split)."""
    weight = np.zeros(labels.size, dtype=np.float32)
    for split_name in pd.unique(splits):
        in_split = splits == split_name
        weight[in_split] = perturbation_weights(labels[in_split]).reindex(labels[in_split])
    return weight


def _cell_labels(
    adata: ad.AnnData, perturbation_key: str, control_label: str, target_gene_key: str
) -> np.ndarray:
    """Target gene per perturbed cell and ``control_label`` for controls."""
    is_control = adata.obs[perturbation_key].astype(str).to_numpy() == control_label
    if not is_control.any():
        raise GenevaeInputError(
            f"control_label={control_label!r} never occurs in adata.obs[{perturbation_key!r}]."
        )
    targets = adata.obs[target_gene_key].astype(str).to_numpy()
    return np.where(is_control, control_label, targets)


def _fit_rows(splits: np.ndarray, fit_on: FitOn, train_split: str, split_key: str) -> np.ndarray:
    """Rows whose data the model input's statistics are estimated from (see ``fit_on``)."""
    if fit_on == "all_cells":
        return np.arange(splits.size)
    if fit_on != "training_cells":
        raise GenevaeInputError(f"fit_on={fit_on!r} must be 'training_cells' or 'all_cells'.")
    rows = np.flatnonzero(splits == train_split)
    if rows.size == 0:
        raise GenevaeInputError(
            f"no cell has {split_key}={train_split!r} (train_split); the splits present are "
            f"{sorted(set(splits))}. Set train_split, or fit_on='all_cells' (leaks test cells)."
        )
    return rows


def _median_library_size(counts: sp.csr_matrix) -> float:
    """Median total count of the cells with any count: scanpy normalize_total's default target."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    positive = totals[totals > 0]
    return float(np.median(positive)) if positive.size else 1.0


def build_gpo_inputs(
    adata: ad.AnnData,
    perturbation_key: str,
    control_label: str,
    target_gene_key: str | None = None,
    split_key: str = "split",
    lfc_threshold: float = 3.0,
    *,
    padj_threshold: float = 0.01,
    filter_mode: FilterMode = "paper",
    de_table: pd.DataFrame | None = None,
    counts_layer: str | None = None,
    match_on: MatchOn = "perturbed_genes",
    ot_reg: float = 1.0,
    ot_cost_scale: float = 100.0,
    qc_n_mads: float = 3.0,
    cf_max_cells: int = 50,
    seed: int = 0,
    fit_on: FitOn = "training_cells",
    train_split: str = "train",
) -> GPOInputs:
    """Assemble GPO-VAE's inputs from raw counts with perturbation and split labels.

    Controls are the cells whose ``perturbation_key`` equals ``control_label``; other cells are
    labelled by their ``target_gene_key`` (default: the perturbation label itself), which must
    be a measured gene. Everything estimated from the data is fitted on the ``fit_on`` cells:
    ``"training_cells"`` (default; the ``train_split`` cells, so no test cell shapes the model
    input) or ``"all_cells"`` (the original code, which leaked test cells). These are the
    normalisation target (median library size), the DE test for the extra nodes (Wilcoxon vs
    controls, unless ``de_table`` is given) and the QC thresholds (median ± n·MAD), which
    then flag every cell. Controls are matched by OT within each split on the perturbed genes
    (``match_on="perturbed_genes"``, the original code) or on all nodes. Weights are 1/count of
    the cell's perturbation within its own split (SAMS-VAE counts per split).
    ``lfc_threshold`` is 3 for K562/RPE1 and 2 for Adamson in the original.
    """
    for key, parameter in ((perturbation_key, "perturbation_key"), (split_key, "split_key")):
        _require_obs(adata, key, parameter)
    target_gene_key = target_gene_key or perturbation_key
    _require_obs(adata, target_gene_key, "target_gene_key")
    if match_on not in ("perturbed_genes", "node_genes"):
        raise GenevaeInputError(f"match_on={match_on!r} must be 'perturbed_genes' or 'node_genes'.")
    labels = _cell_labels(adata, perturbation_key, control_label, target_gene_key)
    splits = adata.obs[split_key].astype(str).to_numpy()
    fit_rows = _fit_rows(splits, fit_on, train_split, split_key)
    perturbed_genes = sorted(set(labels) - {control_label})
    unmeasured = [g for g in perturbed_genes if g not in adata.var_names]
    if unmeasured:
        raise GenevaeInputError(
            f"perturbed genes {unmeasured[:10]} are not in adata.var_names; drop them first "
            "(filter_perturbations_by_cell_count(..., require_measured_target=True))."
        )
    counts = _as_counts(adata, counts_layer)
    log_norm = log_normalise_counts(counts, _median_library_size(counts[fit_rows]))
    if de_table is None:
        shell = ad.AnnData(
            X=log_norm[fit_rows],
            obs=pd.DataFrame({"perturbation": labels[fit_rows]}, index=adata.obs_names[fit_rows]),
            var=pd.DataFrame(index=adata.var_names),
        )
        de_table = rank_genes_long(shell, "perturbation", control_label)
    extras = extra_node_genes(de_table, perturbed_genes, lfc_threshold, padj_threshold, filter_mode)
    node_names = perturbed_genes + extras
    node_columns = adata.var_names.get_indexer(node_names)
    if (node_columns < 0).any():
        missing = [n for n, c in zip(node_names, node_columns, strict=True) if c < 0]
        raise GenevaeInputError(f"de_table names genes {missing[:10]} that are not in var_names.")
    match_columns = (
        node_columns[: len(perturbed_genes)] if match_on == "perturbed_genes" else node_columns
    )
    matched = match_controls_per_split(
        log_norm[:, match_columns], labels, splits, control_label, ot_reg, ot_cost_scale
    )
    thresholds = mad_thresholds(qc_metrics(counts[fit_rows], adata.var_names), qc_n_mads)
    qc = qc_flags(adata, qc_n_mads, layer=counts_layer, thresholds=thresholds)
    cf_x, has_cf = counterfactual_targets(
        counts, qc["total_qc"].to_numpy(), labels, splits, cf_max_cells, seed
    )
    return GPOInputs(
        node_names=node_names,
        n_perturbed=len(perturbed_genes),
        perturbation=labels,
        dosage=dosage_matrix(pd.Series(labels), node_names, control_label),
        matched_control=matched,
        delta_x=delta_x(log_norm[:, node_columns], matched),
        qc=qc,
        cf_x=cf_x,
        has_cf=has_cf,
        library=np.asarray(counts.sum(axis=1)).ravel().astype(np.float32),
        perturbation_weight=_weights_within_split(labels, splits),
        split=splits,
    )
