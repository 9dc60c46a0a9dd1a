"""GPO-VAE's model input as one AnnData, and the tensors and tables the nodes read from it.

The ``05_model_input`` artifact keeps AnnData conventions so it opens in scanpy:

- ``X`` log-normalised expression (as in ``<dataset>.processed``, e.g. ``adamson.processed``), ``layers["counts"]`` raw
  counts (the likelihood target), ``layers["counterfactual"]`` CRADLE-VAE's counterfactual
  counts (median of QC-failing cells, CSR);
- ``obsm["dosage"]`` / ``obsm["delta_x"]`` cells × GRN-node DataFrames (perturbed genes
  first, then the extra genes);
- ``obs``: ``perturbation`` (target gene or the control label), ``split``, the QC flags and
  ``total_qc``, ``has_cf``, ``library``, ``perturbation_weight`` and ``qc_weight`` (plate
  weights within the cell's split), ``matched_control`` (obs name of the OT-matched control);
- ``uns["gpo_vae"]``: ``node_names``, ``n_perturbed``, ``control_label``.

anndata and torch are imported by the functions that build objects of theirs, so that the
pipeline modules importing this one stay light (``kedro run`` start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genevae.errors import GenevaeInputError

if TYPE_CHECKING:
    import anndata as ad

    from genevae.preprocessing.gpo_inputs import GPOInputs
    from genevae.training import TensorData

UNS_KEY = "gpo_vae"
OBSM_KEYS = ("dosage", "delta_x")
COLUMN_KEYS = ("library", "perturbation_weight", "qc_weight", "total_qc", "has_cf")


def _qc_weight(qc: np.ndarray, split: np.ndarray) -> np.ndarray:
    """qc / (number of QC-failing cells in the cell's split): the plate weight of qc_E."""
    weight = np.zeros(qc.size, dtype=np.float32)
    for name in pd.unique(split):
        in_split = split == name
        n_failing = qc[in_split].sum()
        if n_failing:
            weight[in_split] = qc[in_split] / n_failing
    return weight


def to_anndata(
    adata: ad.AnnData, inputs: GPOInputs, counts_layer: str | None, control_label: str
) -> ad.AnnData:
    """Bundle ``adata``'s expression with the :class:`GPOInputs` built from it (see module doc)."""
    import anndata as ad

    counts = adata.X if counts_layer is None else adata.layers[counts_layer]
    nodes = pd.Index(inputs.node_names, name="node")
    qc_total = inputs.qc["total_qc"].to_numpy().astype(np.float32)
    matched = np.where(
        inputs.matched_control >= 0,
        np.asarray(adata.obs_names)[np.maximum(inputs.matched_control, 0)],
        "",
    )
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(inputs.perturbation),
            "split": pd.Categorical(inputs.split),
            **{column: inputs.qc[column].to_numpy() for column in inputs.qc.columns},
            "has_cf": inputs.has_cf.astype(np.int8),
            "library": inputs.library,
            "perturbation_weight": inputs.perturbation_weight,
            "qc_weight": _qc_weight(qc_total, inputs.split),
            "matched_control": matched,
        },
        index=adata.obs_names,
    )
    frame = {"index": adata.obs_names, "columns": nodes}
    return ad.AnnData(
        X=sp.csr_matrix(adata.X, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=adata.var_names),
        obsm={
            "dosage": pd.DataFrame(inputs.dosage, **frame),
            "delta_x": pd.DataFrame(inputs.delta_x, **frame),
        },
        layers={
            "counts": sp.csr_matrix(counts, dtype=np.float32),
            "counterfactual": inputs.cf_x,
        },
        uns={
            UNS_KEY: {
                "node_names": list(inputs.node_names),
                "n_perturbed": int(inputs.n_perturbed),
                "control_label": control_label,
            }
        },
    )


def info(model_input: ad.AnnData) -> dict:
    """``uns["gpo_vae"]`` (node names, number of perturbed nodes, control label), checked."""
    if UNS_KEY not in model_input.uns or any(k not in model_input.obsm for k in OBSM_KEYS):
        raise GenevaeInputError(
            "The AnnData is not a GPO-VAE model input (no uns['gpo_vae'] or obsm dosage/"
            "delta_x); create it with the gpo_vae pipeline's build_model_input node."
        )
    meta = model_input.uns[UNS_KEY]
    return {
        "node_names": [str(n) for n in meta["node_names"]],
        "n_perturbed": int(meta["n_perturbed"]),
        "control_label": str(meta["control_label"]),
    }


def split_rows(model_input: ad.AnnData, split: str) -> np.ndarray:
    """Row indices of the cells in ``split`` (an error names the splits that exist)."""
    splits = model_input.obs["split"].astype(str).to_numpy()
    rows = np.flatnonzero(splits == split)
    if rows.size == 0:
        raise GenevaeInputError(
            f"No cells in split {split!r}; the model input has splits {sorted(set(splits))}."
        )
    return rows


def _column(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype=np.float32).reshape(-1, 1)


def tensor_data(model_input: ad.AnnData, split: str) -> TensorData:
    """The batch keys GPO-VAE's ``loss`` reads, for the cells of one split."""
    from genevae.training import TensorData

    info(model_input)
    part = model_input[split_rows(model_input, split)]
    obs = part.obs
    return TensorData(
        {
            "counts": sp.csr_matrix(part.layers["counts"]),
            "cf_x": sp.csr_matrix(part.layers["counterfactual"]),
            "dosage": np.asarray(part.obsm["dosage"], dtype=np.float32),
            "delta_x": np.asarray(part.obsm["delta_x"], dtype=np.float32),
            "library": _column(obs["library"]),
            "perturbation_weight": _column(obs["perturbation_weight"]),
            "qc": _column(obs["total_qc"]),
            "qc_weight": _column(obs["qc_weight"]),
            "has_cf": _column(obs["has_cf"]),
        }
    )


def perturbation_dosage(model_input: ad.AnnData) -> pd.DataFrame:
    """One dosage row per perturbed gene (index: gene, columns: GRN nodes), for ATE prediction."""
    meta = info(model_input)
    perturbed = meta["node_names"][: meta["n_perturbed"]]
    dosage = np.eye(len(meta["node_names"]), dtype=np.float32)[: meta["n_perturbed"]]
    return pd.DataFrame(
        dosage,
        index=pd.Index(perturbed, name="perturbation"),
        columns=pd.Index(meta["node_names"], name="node"),
    )
