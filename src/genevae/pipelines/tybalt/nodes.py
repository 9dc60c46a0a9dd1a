"""Tybalt nodes: thin adapters from catalog data and parameters to the library.

Library modules that load torch, scikit-learn or matplotlib are imported inside the node that
uses them, so that building the pipeline (``kedro run`` start-up) does not load them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.datasets.model_bundle import ModelBundle
from genevae.errors import GenevaeInputError
from genevae.pipelines.common import (
    expression_data,
    final_metrics,
    fit_model_on_split,
    obs_split_indices,
    seed_model_init,
    train_validation_split,
)

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

LATENT_KEY = "X_tybalt"
_COLOUR_COLUMNS = ("Hex Colors", "Study Abbreviation")


def train_tybalt(
    adata: AnnData,
    model_params: dict[str, Any],
    training_params: dict[str, Any],
    validation_params: dict[str, Any],
) -> tuple[ModelBundle, pd.DataFrame, dict]:
    """Build Tybalt for the data's genes and train it on the configured train/validation split."""
    from genevae.models.tybalt import Tybalt

    data = expression_data(adata)
    seed = training_params.get("seed", 0)
    train_index, validation_index = _split(adata.obs, validation_params, seed)
    seed_model_init(training_params)
    model = Tybalt(n_genes=adata.n_vars, **model_params)
    bundle, history = fit_model_on_split(
        model,
        data,
        training_params,
        train_index=train_index,
        validation_index=validation_index,
        gene_names=list(adata.var_names),
        metadata={"node_names": node_names(model.latent_dim)},
    )
    return bundle, history, final_metrics(history)


def _split(
    obs: pd.DataFrame, validation_params: dict[str, Any], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The data's split column when one is named, else a seeded random split."""
    column = validation_params.get("split_column")
    if column:
        return obs_split_indices(obs, column)
    return train_validation_split(len(obs), validation_params["fraction"], seed)


def node_names(latent_dim: int) -> list[str]:
    """Latent node names "1" … "k", numbered from 1 like Tybalt's encodings (node 82, …)."""
    return [str(i) for i in range(1, latent_dim + 1)]


def encode_samples(bundle: ModelBundle, adata: AnnData) -> tuple[AnnData, pd.DataFrame]:
    """Latent means in ``obsm["X_tybalt"]`` and as a samples × nodes table."""
    from genevae.training import encode

    latent = encode(bundle.model, expression_data(adata[:, bundle.gene_names]))
    table = pd.DataFrame(
        latent,
        index=pd.Index(adata.obs_names, name="sample"),
        columns=bundle.metadata["node_names"],
    )
    encoded = adata.copy()
    encoded.obsm[LATENT_KEY] = latent.astype(np.float32)
    encoded.uns["tybalt_node_names"] = list(table.columns)
    return encoded, table


def decoder_weight_table(bundle: ModelBundle) -> pd.DataFrame:
    """Genes × nodes decoder weights: the matrix Tybalt interprets nodes with."""
    return pd.DataFrame(
        bundle.model.decoder_weights(),
        index=pd.Index(bundle.gene_names, name="gene"),
        columns=bundle.metadata["node_names"],
    )


def high_weight_gene_table(weights: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Per-node genes beyond ±n SD of the node's weights (both tails)."""
    from genevae.analysis.latent import high_weight_genes

    return high_weight_genes(
        weights, n_sd=params["high_weight_sd"], centre=params["high_weight_centre"]
    )


def node_activity_table(latent: pd.DataFrame) -> pd.DataFrame:
    """Per-node activation summary; warns about dead nodes (constant over samples)."""
    from genevae.analysis.latent import node_activity_summary

    summary = node_activity_summary(latent)
    dead = summary.index[summary["dead"]].tolist()
    if dead:
        logger.warning("Tybalt has %d dead latent node(s): %s", len(dead), dead[:20])
    return summary


def cancer_type_palette(colors: pd.DataFrame) -> dict[str, str]:
    """TCGA study → hex colour from the colour table as the catalog reads it.

    pandas reads the table's literal ``NA`` study as missing; it is restored as the label.
    """
    missing = [column for column in _COLOUR_COLUMNS if column not in colors.columns]
    if missing:
        raise GenevaeInputError(
            f"The colours table lacks column(s) {missing} (found {list(colors.columns)}); "
            "point the dataset's colors: in datasets.yml at a table like Tybalt's tcga_colors.tsv."
        )
    studies = colors["Study Abbreviation"].fillna("NA").astype(str).str.strip()
    return dict(zip(studies, colors["Hex Colors"].astype(str).str.strip(), strict=True))


def tsne_perplexity(requested: float, n_samples: int) -> float:
    """The requested perplexity, lowered to n_samples − 1 (with a warning) when it is too high."""
    if requested < n_samples:
        return requested
    clamped = float(max(n_samples - 1, 1))
    logger.warning(
        "t-SNE perplexity %s needs more than %d samples; using %s instead.",
        requested,
        n_samples,
        clamped,
    )
    return clamped


def latent_maps(
    encoded: AnnData, params: dict[str, Any], colors: pd.DataFrame | None = None
) -> dict[str, Figure]:
    """t-SNE (Tybalt's settings) and UMAP of the latent means, coloured by each obs key.

    Above ``embedding.max_cells`` samples both maps are fitted on a seeded subsample and the
    other samples placed on it (:func:`genevae.analysis.latent.embed_2d`).

    Keys are file names: MatplotlibDataset saves a dict under its keys as they are, and the
    ``.png`` suffix lets the MLflow UI preview them (the catalog entry saves PNG).
    """
    from genevae.analysis.latent import embed_2d
    from genevae.plotting.latent import embedding_scatter

    latent = _latent_frame(encoded)
    perplexity = tsne_perplexity(params["tsne_perplexity"], len(latent))
    max_cells = params["embedding"]["max_cells"]
    maps = {
        "tsne": embed_2d(latent, method="tsne", perplexity=perplexity, max_cells=max_cells),
        "umap": embed_2d(latent, method="umap", max_cells=max_cells),
    }
    palette = cancer_type_palette(colors) if colors is not None else None
    return {
        f"{method}_by_{key}.png": embedding_scatter(
            coords,
            _group_labels(encoded.obs, key),
            palette=palette,
            title=f"Tybalt latent space ({method.upper()}) by {key}",
        )
        for method, coords in maps.items()
        for key in params["color_by"]
    }


def activation_distribution_figure(latent: pd.DataFrame, params: dict[str, Any]) -> Figure:
    """Histograms of the first nodes' activations across samples."""
    from genevae.plotting.latent import activation_distributions

    return activation_distributions(
        latent, nodes=list(latent.columns[: params["n_activation_nodes"]])
    )


def training_curve_figure(history: pd.DataFrame) -> Figure:
    """Per-epoch train/validation curves of every loss term (and β)."""
    from genevae.plotting.training import training_curves

    return training_curves(history, title="Tybalt training")


def sample_from_prior(bundle: ModelBundle, params: dict[str, Any]) -> pd.DataFrame:
    """``n_prior_samples`` profiles decoded from N(0, I) draws (seeded)."""
    import torch

    generator = torch.Generator().manual_seed(params["seed"])
    profiles = bundle.model.generate(params["n_prior_samples"], generator=generator)
    index = pd.Index([f"prior_{i}" for i in range(len(profiles))], name="profile")
    return pd.DataFrame(profiles.cpu().numpy(), index=index, columns=bundle.gene_names)


def latent_arithmetic_profiles(
    bundle: ModelBundle, encoded: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """Decoded mean(a) − mean(b) + mean(c) for every configured comparison, one row each.

    ``groupby`` is an obs column or a list of columns; with a list, labels are the values
    joined by ``|`` (e.g. ``READ|Primary Solid Tumor``).
    """
    from genevae.analysis.latent import latent_arithmetic

    latent = _latent_frame(encoded)
    specs = params["arithmetic"]
    vectors = [
        latent_arithmetic(
            latent, _group_labels(encoded.obs, spec["groupby"]), spec["a"], spec["b"], spec.get("c")
        )
        for spec in specs
    ]
    names = pd.Index([spec["name"] for spec in specs], name="profile")
    return _decode(bundle, np.stack(vectors), names)


def interpolation_profiles(
    bundle: ModelBundle, encoded: AnnData, params: dict[str, Any]
) -> pd.DataFrame:
    """Decoded profiles at evenly spaced points on the latent line between two samples.

    The samples are ``start``/``end`` (sample ids) or, when those are null, the first sample
    of ``start_group``/``end_group`` in the ``groupby`` labels. Rows are indexed by start,
    end and fraction of the way (0 … 1).
    """
    from genevae.analysis.latent import interpolate

    latent = _latent_frame(encoded)
    start = params.get("start") or _first_sample(encoded.obs, params, "start_group")
    end = params.get("end") or _first_sample(encoded.obs, params, "end_group")
    for sample in (start, end):
        if sample not in latent.index:
            raise GenevaeInputError(
                f"interpolation sample {sample!r} is not in the data (e.g. {list(latent.index[:3])})."
            )
    n_steps = params["n_steps"]
    points = interpolate(latent.loc[start].to_numpy(), latent.loc[end].to_numpy(), n_steps)
    index = pd.MultiIndex.from_arrays(
        [[start] * n_steps, [end] * n_steps, np.linspace(0.0, 1.0, n_steps)],
        names=["start", "end", "fraction"],
    )
    return _decode(bundle, points, index)


def _first_sample(obs: pd.DataFrame, params: dict[str, Any], key: str) -> str:
    labels = _group_labels(obs, params["groupby"])
    members = labels.index[labels == params[key]]
    if not len(members):
        raise GenevaeInputError(
            f"interpolation {key}={params[key]!r} has no samples in {params['groupby']!r}; "
            f"labels are {sorted(labels.unique())}."
        )
    return str(members[0])


def _group_labels(obs: pd.DataFrame, groupby: str | Sequence[str]) -> pd.Series:
    """One obs column as strings, or several joined by ``|``."""
    keys = [groupby] if isinstance(groupby, str) else list(groupby)
    missing = [key for key in keys if key not in obs.columns]
    if missing:
        raise GenevaeInputError(
            f"obs has no column(s) {missing} (columns: {list(obs.columns)}); fix groupby."
        )
    labels = obs[keys].astype(str).agg("|".join, axis=1)
    return labels.rename("|".join(keys))


def _latent_frame(encoded: AnnData) -> pd.DataFrame:
    if LATENT_KEY not in encoded.obsm:
        raise GenevaeInputError(
            f"AnnData has no obsm[{LATENT_KEY!r}]; pass the output of encode_samples."
        )
    return pd.DataFrame(
        np.asarray(encoded.obsm[LATENT_KEY]),
        index=encoded.obs_names,
        columns=encoded.uns["tybalt_node_names"],
    )


def _decode(bundle: ModelBundle, z: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Expected zero-one expression of latent points, as profiles × genes."""
    import torch

    device = bundle.model.decoder.weight.device
    with torch.no_grad():
        profiles = bundle.model.decode(torch.as_tensor(z, dtype=torch.float32, device=device))
    return pd.DataFrame(profiles.cpu().numpy(), index=index, columns=bundle.gene_names)


def latent_report(
    node_activity: pd.DataFrame,
    high_weight_genes: pd.DataFrame,
    latent_maps: dict[str, bytes],
    activations: bytes,
    training: bytes,
    params: dict[str, Any],
) -> tuple[str, list[str]]:
    """The latent report (HTML) and its headline lines, from this pipeline's outputs."""
    from genevae.reporting.model_reports import tybalt_report

    figures = {"maps": latent_maps, "activations": activations, "training": training}
    return tybalt_report(node_activity, high_weight_genes, figures, parameters=params)
