"""VEGA generalisation (paper Fig. 4): biological (cell type held out) and technical (study).

All fits go through the vega pipeline's ``train_vega`` (via :func:`adapters.vega_trainer`),
each in a nested MLflow run, with the trained model's settings (or the vega parameters) plus
the experiment's overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError
from genevae.pipelines.evaluation.adapters import (
    merged_vega_params,
    same_training,
    settings_of,
    vega_posterior,
    vega_trainer,
)
from genevae.pipelines.evaluation.datasets import Loaded
from genevae.pipelines.evaluation.parts import (
    absent_part,
    figure_block,
    metric_rows,
    section_part,
)
from genevae.reporting.sections import ReportSection, TableBlock

if TYPE_CHECKING:
    from anndata import AnnData

    from genevae.analysis.generalisation import Encoder

BIOLOGICAL_COLUMNS = [
    "cell_type", "n_stimulated", "n_control", "resample", "r2_full", "r2_held_out",
    "top_k_overlap", "full_model", "settings",
]  # fmt: skip
TECHNICAL_COLUMNS = [
    "cell_type", "n_cells", "resample", "r2_in_sample", "r2_out_of_sample", "top_k_overlap",
]  # fmt: skip


@dataclass(frozen=True)
class FitPlan:
    """How the experiment's models are trained, and whether the full model can be reused."""

    params: dict[str, Any]
    full_model: Encoder | None
    origin: str

    @property
    def seed(self) -> int:
        return int(self.params["training"]["seed"])


def fit_plan(
    adata: AnnData,
    mask: pd.DataFrame,
    full_model: Loaded | None,
    vega_params: dict[str, Any],
    params: dict[str, Any],
) -> FitPlan:
    """Settings of every fit: the vega model's own (``settings_from: model``, so the
    experiment tests the model that was trained, whatever environment trained it) or the
    vega parameters (``parameters``), plus the experiment's ``training``/``model``
    overrides. The vega model is reused as the full model when it was trained exactly so."""
    overrides = (params.get("training"), params.get("model"))
    if params["settings_from"] == "model" and full_model is not None:
        fit = merged_vega_params(settings_of(full_model.data), *overrides)
    else:
        fit = merged_vega_params(vega_params, *overrides)
        fit["training"]["seed"] = params["seed"]
    fit["training"]["max_epochs"] = budgeted_epochs(
        fit["training"]["max_epochs"], adata.n_obs, params["max_cell_epochs"]
    )
    reuse = full_model is not None and same_training(full_model.data, fit, adata, mask)
    if not reuse:
        return FitPlan(fit, None, "retrained with the settings below")
    bundle = full_model.data
    return FitPlan(
        fit,
        lambda cells: vega_posterior(bundle, cells),
        f"{full_model.source} {full_model.version}",
    )


def budgeted_epochs(max_epochs: int, n_cells: int, max_cell_epochs: int | None) -> int:
    """``max_epochs``, lowered so that epochs × cells stays within ``max_cell_epochs``.

    The experiments retrain VEGA several times; at 1,000–20,000 cells the models' own epochs
    are kept, while on 200,000 cells a fixed budget of cells seen bounds each fit (scvi-tools'
    heuristic: 400 epochs up to 20,000 cells, then 400 × 20,000 / cells). Every fit of an
    experiment gets the same epochs, the full model included (retrained when its own differ),
    so held-out and full models are still trained alike.
    """
    if max_cell_epochs is None:
        return int(max_epochs)
    if max_cell_epochs < 1:
        raise GenevaeInputError(
            f"generalisation.max_cell_epochs must be >= 1 or null; got {max_cell_epochs}."
        )
    return int(max(1, min(max_epochs, max_cell_epochs // max(n_cells, 1))))


def biological_experiment(
    adata: AnnData,
    mask: pd.DataFrame,
    full_model: Loaded | None,
    vega_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """Per cell type: full model vs a model trained without that type's stimulated cells."""
    from genevae.analysis.generalisation import biological_generalisation

    if not params["enabled"]:
        return pd.DataFrame(columns=BIOLOGICAL_COLUMNS)
    plan = fit_plan(adata, mask, full_model, vega_params, params)
    results = biological_generalisation(
        adata,
        vega_trainer(mask, plan.params, run_prefix="generalisation.biological"),
        params["cell_types"],
        cell_type_key=params["cell_type_key"],
        condition_key=params["condition_key"],
        stimulated=params["stimulated"],
        control=params["control"],
        seed=plan.seed,
        full_model=plan.full_model,
        **params["comparison"],
    )
    results["full_model"] = plan.origin
    results["settings"] = _settings_summary(plan.params)
    return results[BIOLOGICAL_COLUMNS]


def _settings_summary(fit: dict[str, Any]) -> str:
    training, model = fit["training"], fit["model"]
    return (
        f"hidden {model.get('hidden')}, max_epochs {training.get('max_epochs')}, "
        f"learning_rate {training.get('learning_rate')}, batch_size {training.get('batch_size')}, "
        f"seed {training.get('seed')}, validation_fraction {fit.get('validation_fraction')}"
    )


def technical_experiment(
    adata: AnnData,
    mask: pd.DataFrame,
    full_model: Loaded | None,
    vega_params: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """Train on study A, encode study B; per cell type compare with B's own model."""
    from genevae.analysis.generalisation import technical_generalisation

    technical = params["technical"]
    if not (params["enabled"] and technical["enabled"]):
        return pd.DataFrame(columns=TECHNICAL_COLUMNS)
    plan = fit_plan(adata, mask, full_model, vega_params, params)
    results = technical_generalisation(
        adata,
        vega_trainer(mask, plan.params, run_prefix="generalisation.technical"),
        cell_type_key=params["cell_type_key"],
        study_key=technical["study_key"],
        studies=tuple(technical["studies"]) if technical["studies"] else None,
        stratify_keys=technical["stratify_keys"],
        min_cells=technical["min_cells"],
        seed=plan.seed,
        **params["comparison"],
    )
    return results[TECHNICAL_COLUMNS]


def mean_sd(summary: pd.DataFrame, column: str) -> pd.Series:
    """'mean ± SD' strings (just the mean when there is a single resample)."""
    means, sds = summary[f"{column}_mean"], summary[f"{column}_std"]
    return pd.Series(
        [
            f"{m:.3f}" if pd.isna(s) else f"{m:.3f} ± {s:.3f}"
            for m, s in zip(means, sds, strict=True)
        ],
        index=summary.index,
    )


def _biological_part(results: pd.DataFrame, params: dict[str, Any]) -> ReportSection:
    from genevae.analysis.generalisation import PAPER_MEAN_TOP50_OVERLAP, summarise_resamples
    from genevae.reporting import figures

    k = params["comparison"]["top_k"]
    summary = summarise_resamples(
        results,
        ["cell_type", "n_stimulated", "n_control"],
        ["top_k_overlap", "r2_full", "r2_held_out"],
    )
    display = summary[["cell_type", "n_stimulated", "n_control"]].assign(
        **{
            f"top-{k} overlap": mean_sd(summary, "top_k_overlap"),
            "R² full model": mean_sd(summary, "r2_full"),
            "R² held-out model": mean_sd(summary, "r2_held_out"),
            "resamples": summary["top_k_overlap_count"],
        }
    )
    overall = float(summary["top_k_overlap_mean"].mean())
    rows = pd.concat(
        [
            summary.assign(
                method="vega",
                family="generalisation",
                metric=metric,
                value=summary[f"{column}_mean"],
            )
            for metric, column in (
                (f"top{k}_overlap_held_out_vs_full", "top_k_overlap"),
                ("r2_held_out", "r2_held_out"),
                ("r2_full", "r2_full"),
            )
        ]
    ).rename(columns={"cell_type": "subset"})
    rows = pd.concat(
        [
            rows[["method", "family", "metric", "subset", "value"]],
            pd.DataFrame(
                [
                    [
                        "vega",
                        "generalisation",
                        f"top{k}_overlap_held_out_vs_full",
                        "mean over cell types",
                        overall,
                    ],
                    [
                        "paper",
                        "generalisation",
                        f"top{k}_overlap_held_out_vs_full",
                        "mean over cell types",
                        PAPER_MEAN_TOP50_OVERLAP if k == 50 else np.nan,
                    ],
                ],
                columns=["method", "family", "metric", "subset", "value"],
            ),
        ],
        ignore_index=True,
    )
    return section_part(
        summary=(
            f"Biological generalisation: mean top-{k} overlap {overall:.3f} over "
            f"{len(summary)} cell types (paper: {PAPER_MEAN_TOP50_OVERLAP} on the full Kang data)."
        ),
        notes=[
            f"Full model: {results['full_model'].iloc[0]}; every fit: "
            f"{results['settings'].iloc[0]}.",
            "Each resample draws the held-out type's stimulated cells with replacement "
            f"({params['comparison']['n_cells'] or 'as many as there are'} per resample) and "
            "compares stimulated vs control of that type under both models with the same random "
            "draws.",
        ],
        tables=[
            TableBlock(
                "Biological generalisation (cell type held out): mean ± SD over resamples",
                display,
                f"top-{k} overlap: share of the {k} modules with the largest |ln BF| (stimulated "
                "vs control, ties by |mean difference|) found by both the full model and the "
                "model that never saw this type's stimulated cells. R²: mean reconstructed vs "
                "mean observed profile of the stimulated cells.",
                max_rows=None,
            )
        ],
        figures=[
            figure_block(
                "Biological generalisation",
                figures.generalisation_overview(
                    results,
                    paper_overlap=PAPER_MEAN_TOP50_OVERLAP if k == 50 else None,
                    top_k=k,
                    title="Held-out stimulated cells encoded out of sample",
                ),
            )
        ],
        metrics=metric_rows(
            rows,
            "vega",
            baselines=["paper"],
            headline=rows["subset"].eq("mean over cell types").to_numpy(),
        ),
    )


def _technical_part(results: pd.DataFrame, params: dict[str, Any]) -> ReportSection:
    from genevae.analysis.generalisation import summarise_resamples
    from genevae.reporting import figures

    k = params["comparison"]["top_k"]
    columns = ["top_k_overlap", "r2_in_sample", "r2_out_of_sample"]
    summary = summarise_resamples(results, ["cell_type", "n_cells"], columns)
    display = summary[["cell_type", "n_cells"]].assign(
        **{
            f"top-{k} overlap": mean_sd(summary, "top_k_overlap"),
            "R² in-sample model": mean_sd(summary, "r2_in_sample"),
            "R² out-of-sample model": mean_sd(summary, "r2_out_of_sample"),
        }
    )
    rows = summary.assign(
        method="vega",
        family="generalisation",
        metric=f"top{k}_overlap_out_vs_in_sample",
        value=summary["top_k_overlap_mean"],
    ).rename(columns={"cell_type": "subset"})[["method", "family", "metric", "subset", "value"]]
    rows = pd.concat(
        [
            rows,
            pd.DataFrame(
                [
                    [
                        "vega",
                        "generalisation",
                        rows["metric"].iloc[0],
                        "mean over cell types",
                        rows["value"].mean(),
                    ]
                ],
                columns=rows.columns,
            ),
        ],
        ignore_index=True,
    )
    emulated = params["technical"]["study_key"] is None
    return section_part(
        notes=[
            "Technical generalisation with two halves of one study (cells split in half within "
            "each cell type × condition): the halves share donors, chemistry and processing, so "
            "this bounds cross-study transfer from above; it does not measure it."
        ]
        if emulated
        else [],
        tables=[
            TableBlock(
                "Technical generalisation (train on study A, encode study B): mean ± SD",
                display,
                f"Per cell type of study B: overlap of the top-{k} one-vs-rest modules under the "
                "model trained on A (out of sample) and the model trained on B (in sample), and "
                "each model's R² of the type's mean profile.",
                max_rows=None,
            )
        ],
        figures=[
            figure_block(
                "Technical generalisation",
                figures.generalisation_overview(
                    results,
                    r2_pair=("r2_in_sample", "r2_out_of_sample"),
                    r2_labels=("in-sample model (B)", "out-of-sample model (A)"),
                    top_k=k,
                    title="Study B encoded by a model trained on study A",
                ),
            )
        ],
        metrics=metric_rows(
            rows,
            "vega",
            baselines=[],
            headline=rows["subset"].eq("mean over cell types").to_numpy(),
        ),
    )


def generalisation_parts(
    biological: pd.DataFrame, technical: pd.DataFrame, params: dict[str, Any]
) -> ReportSection:
    """Tables and figures of both experiments (an absent part when neither ran)."""
    parts = []
    if not biological.empty:
        parts.append(_biological_part(biological, params))
    if not technical.empty:
        parts.append(_technical_part(technical, params))
    if not parts:
        return absent_part()
    for part in parts[1:]:
        parts[0].extend(part)
    return parts[0]
