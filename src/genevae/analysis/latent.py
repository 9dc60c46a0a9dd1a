"""Model-agnostic analyses of a latent space: node weights, arithmetic, activity, separation, 2-D maps.

Latent spaces are samples × nodes DataFrames (e.g. Tybalt/VEGA encodings); gene weights are
genes × nodes DataFrames (e.g. a decoder kernel). Nothing here depends on a particular model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from genevae.errors import GenevaeInputError

# Tybalt's tsne_tybalt_features.py settings (n_iter 400 there; sklearn calls it max_iter).
TSNE_PARAMS = {"init": "pca", "learning_rate": 300.0, "max_iter": 400}
TSNE_SEED = 0
UMAP_PARAMS = {"n_neighbors": 15, "min_dist": 0.5}
UMAP_SEED = 42
EMBEDDING_METHODS = ("tsne", "umap")


def high_weight_genes(
    weights: pd.DataFrame, n_sd: float = 2.5, centre: bool = True
) -> pd.DataFrame:
    """Genes whose weight lies in either tail of each node's weight distribution.

    With ``centre=True`` (Tybalt's corrected rule, PR #146) a gene is high-weight for a node when
    its weight is above mean + n_sd·SD ("positive" tail) or below mean − n_sd·SD ("negative").
    ``centre=False`` reproduces the HGSC-subtype script, which compared against ±n_sd·SD
    without adding the node's mean. SD is the sample standard deviation (ddof=1, as pandas).

    Returns a long table with columns node, gene, weight, tail, sorted by node, tail and
    decreasing |weight|.
    """
    _check_numeric_frame(weights, "weights (genes × nodes)")
    if n_sd <= 0:
        raise GenevaeInputError(f"high_weight_genes: n_sd must be > 0; got {n_sd}.")
    offset = weights.mean() if centre else 0.0
    spread = n_sd * weights.std()
    positive = weights.gt(offset + spread, axis=1)
    negative = weights.lt(offset - spread, axis=1)
    rows = [
        _tail_rows(weights, positive, "positive"),
        _tail_rows(weights, negative, "negative"),
    ]
    table = pd.concat(rows, ignore_index=True)
    order = table["weight"].abs().rank(ascending=False, method="first")
    table = table.assign(_order=order).sort_values(["node", "tail", "_order"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def _tail_rows(weights: pd.DataFrame, selected: pd.DataFrame, tail: str) -> pd.DataFrame:
    genes, nodes = np.nonzero(selected.to_numpy())
    return pd.DataFrame(
        {
            "node": weights.columns[nodes],
            "gene": weights.index[genes],
            "weight": weights.to_numpy()[genes, nodes],
            "tail": tail,
        }
    )


def latent_arithmetic(
    latent: pd.DataFrame,
    labels: pd.Series | Sequence,
    a: str,
    b: str,
    c: str | None = None,
) -> np.ndarray:
    """mean(latent | a) − mean(latent | b) [+ mean(latent | c)], one value per node.

    With ``c=None`` this is the subtype difference of Tybalt's HGSC analysis (e.g.
    Immunoreactive − Mesenchymal); with ``c`` it is the analogy "a is to b as ? is to c".
    """
    _check_numeric_frame(latent, "latent (samples × nodes)")
    groups = _aligned_labels(latent, labels)
    result = _group_mean(latent, groups, a) - _group_mean(latent, groups, b)
    if c is not None:
        result = result + _group_mean(latent, groups, c)
    return result


def _group_mean(latent: pd.DataFrame, labels: pd.Series, label: str) -> np.ndarray:
    members = (labels == label).to_numpy()
    if not members.any():
        raise GenevaeInputError(
            f"latent_arithmetic: label {label!r} has no samples; available labels are "
            f"{sorted(labels.dropna().unique().tolist())}."
        )
    return latent.to_numpy()[members].mean(0)


def interpolate(z_start: np.ndarray, z_end: np.ndarray, n_steps: int) -> np.ndarray:
    """``n_steps`` evenly spaced latent points from ``z_start`` to ``z_end`` (both included)."""
    start, end = np.asarray(z_start, dtype=float), np.asarray(z_end, dtype=float)
    if start.shape != end.shape or start.ndim != 1:
        raise GenevaeInputError(
            f"interpolate needs two 1-D latent vectors of equal length; got shapes "
            f"{start.shape} and {end.shape}."
        )
    if n_steps < 2:
        raise GenevaeInputError(f"interpolate: n_steps must be >= 2; got {n_steps}.")
    fractions = np.linspace(0.0, 1.0, n_steps)[:, None]
    return (1.0 - fractions) * start + fractions * end


def node_activity_summary(latent: pd.DataFrame, dead_tol: float = 1e-6) -> pd.DataFrame:
    """Per-node sum, mean, SD and fraction of non-zero activations, with dead nodes flagged.

    A node is dead when its activation barely varies across samples (SD ≤ ``dead_tol``): it
    then carries no information about the sample, whether it is stuck at 0 (a ReLU node that
    never fires) or at any other constant.
    """
    _check_numeric_frame(latent, "latent (samples × nodes)")
    values = latent.to_numpy(dtype=float)
    sd = values.std(0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    return pd.DataFrame(
        {
            "sum": values.sum(0),
            "mean": values.mean(0),
            "sd": sd,
            "fraction_nonzero": (np.abs(values) > dead_tol).mean(0),
            "dead": sd <= dead_tol,
        },
        index=pd.Index(latent.columns, name="node"),
    )


def knn_label_accuracy(
    latent: pd.DataFrame,
    labels: pd.Series | Sequence,
    k: int = 5,
    seed: int = 0,
    n_folds: int = 5,
) -> float:
    """Mean stratified ``n_folds``-fold accuracy of a k-NN classifier predicting labels from the latent.

    Measures how well the latent space keeps samples of one label together (chance = share
    of the largest label).
    """
    _check_numeric_frame(latent, "latent (samples × nodes)")
    groups = _aligned_labels(latent, labels)
    smallest = groups.value_counts().min()
    if smallest < n_folds:
        raise GenevaeInputError(
            f"knn_label_accuracy: every label needs >= n_folds={n_folds} samples; the smallest "
            f"has {smallest}. Lower n_folds or drop rare labels."
        )
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    scores = cross_val_score(
        KNeighborsClassifier(n_neighbors=k), latent.to_numpy(), groups, cv=folds
    )
    return float(scores.mean())


def silhouette(latent: pd.DataFrame, labels: pd.Series | Sequence) -> float:
    """Mean Euclidean silhouette width of the labels in the latent space (−1 to 1)."""
    _check_numeric_frame(latent, "latent (samples × nodes)")
    groups = _aligned_labels(latent, labels)
    if groups.nunique() < 2:
        raise GenevaeInputError("silhouette needs at least two distinct labels.")
    return float(silhouette_score(latent.to_numpy(), groups.to_numpy()))


def embed_2d(
    latent: pd.DataFrame,
    method: str = "tsne",
    seed: int | None = None,
    perplexity: float = 20.0,
    max_cells: int | None = None,
) -> pd.DataFrame:
    """Two-dimensional map of the samples, as the papers drew them.

    ``"tsne"`` uses Tybalt's settings (PCA init, perplexity 20, learning rate 300, 400
    iterations, seed 0); ``"umap"`` uses n_neighbors 15, min_dist 0.5, seed 42.
    ``seed=None`` keeps the method's published seed. Returns samples × ``<method>_1/_2``.

    With more than ``max_cells`` samples the map is fitted on a seeded random subsample of
    ``max_cells`` (the fit's neighbour graph and optimisation are what grows faster than the
    samples) and the others are placed on it: UMAP's own ``transform``; for t-SNE, which has
    no out-of-sample map, each sample goes to the median position of its
    ``TSNE_PLACEMENT_NEIGHBOURS`` nearest fitted samples in the latent space (openTSNE's
    ``prepare_partial`` placement, without its optimisation). ``max_cells=None`` or at most
    that many samples: everything is fitted, as before.
    """
    _check_numeric_frame(latent, "latent (samples × nodes)")
    if method not in EMBEDDING_METHODS:
        raise GenevaeInputError(f"embed_2d: method={method!r} is not one of {EMBEDDING_METHODS}.")
    if max_cells is not None and max_cells < 2:
        raise GenevaeInputError(f"embed_2d: max_cells must be >= 2 or None; got {max_cells}.")
    values = latent.to_numpy(dtype=float)
    seed = (TSNE_SEED if method == "tsne" else UMAP_SEED) if seed is None else seed
    if max_cells is None or len(values) <= max_cells:
        coords = _fit_map(values, method, seed, perplexity)[0]
    else:
        coords = _subsample_map(values, method, seed, perplexity, max_cells)
    return pd.DataFrame(coords, index=latent.index, columns=[f"{method}_1", f"{method}_2"])


TSNE_PLACEMENT_NEIGHBOURS = 25  # openTSNE prepare_partial's k


def _fit_map(values: np.ndarray, method: str, seed: int, perplexity: float) -> tuple:
    """(coordinates, fitted UMAP or None) of ``values``."""
    if method == "tsne":
        return _tsne(values, seed, perplexity), None
    return _umap(values, seed)


def _subsample_map(
    values: np.ndarray, method: str, seed: int, perplexity: float, max_cells: int
) -> np.ndarray:
    """Fit on ``max_cells`` seeded samples, place the rest (see :func:`embed_2d`)."""
    fitted = np.zeros(len(values), dtype=bool)
    fitted[np.random.default_rng(seed).choice(len(values), size=max_cells, replace=False)] = True
    coords = np.empty((len(values), 2))
    coords[fitted], reducer = _fit_map(values[fitted], method, seed, perplexity)
    if reducer is not None:
        coords[~fitted] = reducer.transform(values[~fitted])
    else:
        coords[~fitted] = _knn_placement(values[fitted], coords[fitted], values[~fitted])
    return coords


def _knn_placement(
    reference: np.ndarray, reference_coords: np.ndarray, queries: np.ndarray
) -> np.ndarray:
    """Median map position of each query's nearest reference samples (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(TSNE_PLACEMENT_NEIGHBOURS, len(reference))
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(queries)
    return np.median(reference_coords[neighbours], axis=1)


def _tsne(values: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    if perplexity >= len(values):
        raise GenevaeInputError(
            f"embed_2d: perplexity ({perplexity}) must be smaller than the number of samples "
            f"({len(values)}); lower the perplexity parameter."
        )
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, **TSNE_PARAMS)
    return tsne.fit_transform(values)


def _umap(values: np.ndarray, seed: int) -> tuple[np.ndarray, object]:
    import umap  # imported lazily: numba compilation makes the import slow

    reducer = umap.UMAP(n_components=2, random_state=seed, n_jobs=1, **UMAP_PARAMS)
    return reducer.fit_transform(values), reducer


def _check_numeric_frame(frame: pd.DataFrame, name: str) -> None:
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise GenevaeInputError(f"{name} must be a non-empty pandas DataFrame.")
    non_numeric = [
        col for col, dtype in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)
    ]
    if non_numeric:
        raise GenevaeInputError(
            f"{name} has non-numeric columns {non_numeric[:5]}; keep only node values."
        )
    if not np.isfinite(frame.to_numpy(dtype=float)).all():
        raise GenevaeInputError(
            f"{name} contains NaN or infinite values; drop or impute them first."
        )


def _aligned_labels(latent: pd.DataFrame, labels: pd.Series | Sequence) -> pd.Series:
    """Labels as a Series in the latent's row order (aligned by index when a Series is given)."""
    if isinstance(labels, pd.Series):
        missing = latent.index.difference(labels.index)
        if len(missing):
            raise GenevaeInputError(
                f"labels lack {len(missing)} latent samples (e.g. {list(missing[:3])}); pass labels "
                "indexed by the same sample IDs as the latent."
            )
        return labels.reindex(latent.index)
    if len(labels) != len(latent):
        raise GenevaeInputError(
            f"labels has {len(labels)} entries but latent has {len(latent)} samples."
        )
    return pd.Series(np.asarray(labels), index=latent.index)
