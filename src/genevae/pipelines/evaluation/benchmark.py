"""Ground-truth benchmarks on synthetic data: planted modules (VEGA) and planted GRN edges
(GPO-VAE), each method beside training-free baselines.

Training goes through the model pipelines' own nodes (``train_vega``, ``train_gpo_vae``),
each fit in a nested MLflow run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from genevae.pipelines.evaluation.adapters import child_run, merged_vega_params, vega_trainer
from genevae.pipelines.evaluation.generalisation import mean_sd
from genevae.pipelines.evaluation.parts import (
    absent_part,
    figure_block,
    metric_rows,
    section_part,
)
from genevae.pipelines.gpo_vae import nodes as gpo_nodes
from genevae.pipelines.gpo_vae.model_input import info
from genevae.preprocessing.genesets import build_gene_module_mask
from genevae.reporting.sections import ReportSection, TableBlock

# --- planted-module benchmark -------------------------------------------------------------------


def _planted_scores(
    data, fit: dict[str, Any], params: dict[str, Any], seed: int
) -> dict[str, pd.Series]:
    """Signed stimulated-vs-control score per module from VEGA, module scores and GSEA."""
    from genevae.analysis.baselines import differential_module_scores, module_scores
    from genevae.analysis.bayes_factor import differential_activity
    from genevae.analysis.generalisation import posterior_sampler
    from genevae.analysis.gsea import run_prerank, wilcoxon_ranking

    adata = data.adata
    mask_info = build_gene_module_mask(adata.var_names, data.gene_sets, add_nodes=1)
    mask = pd.DataFrame(mask_info.mask, index=adata.var_names, columns=mask_info.module_names)
    encoder = vega_trainer(mask, fit, run_prefix="benchmark")(
        adata, seed, f"n{adata.n_obs}_seed{seed}"
    )
    posterior = encoder(adata)
    labels = adata.obs["condition"].astype(str).to_numpy()
    rows = np.arange(adata.n_obs)
    bf = differential_activity(
        posterior_sampler(posterior, rows, seed),
        labels,
        "stimulated",
        "control",
        module_names=posterior.module_names,
        seed=seed,
        **params["bayes_factor"],
    )
    score_settings = dict(params["module_score"])
    test = score_settings.pop("test")
    tested = differential_module_scores(
        module_scores(adata, data.gene_sets, seed=seed, **score_settings),
        labels,
        "stimulated",
        "control",
        test=test,
    )
    gsea = run_prerank(
        wilcoxon_ranking(adata, "condition", "stimulated", "control"),
        data.gene_sets,
        seed=seed,
        **params["gsea"],
    )
    return {
        "vega": bf.set_index("module")["ln_bf"],
        "module_score": tested.set_index("module")["statistic"],
        "gsea": gsea.set_index("module")["nes"],
    }


def planted_module_benchmark(vega_params: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """AUROC/AUPRC of planted differential modules, per data-set size and replicate.

    Data come from ``make_module_dataset`` (planted modules up in stimulated cells); VEGA is
    trained with the vega parameters plus ``params["training"]``/``params["model"]``.
    """
    from genevae.analysis.metrics import recovery_scores
    from genevae.preprocessing.synthetic import make_module_dataset

    columns = ["n_cells", "replicate", "method", "auroc", "auprc", "prevalence"]
    if not params["enabled"]:
        return pd.DataFrame(columns=columns)
    fit = merged_vega_params(vega_params, params.get("training"), params.get("model"))
    tables = []
    for n_cells in params["sizes"]:
        for replicate in range(params["n_replicates"]):
            seed = params["seed"] + replicate
            data = make_module_dataset(n_cells=n_cells, seed=seed, **params["dataset"])
            fit["training"]["seed"] = seed
            scores = _planted_scores(data, fit, params, seed)
            table = recovery_scores(scores, data.differential_modules, list(data.gene_sets))
            tables.append(table.assign(n_cells=n_cells, replicate=replicate))
    return pd.concat(tables, ignore_index=True)[columns]


def _recovery_part(
    results: pd.DataFrame,
    *,
    model: str,
    baselines: list[str],
    what: str,
    size_label: str,
    summary: str,
    caption: str,
) -> ReportSection:
    """Table (mean ± SD over replicates), curves against size and long metrics of a benchmark."""
    from genevae.analysis.generalisation import summarise_resamples
    from genevae.reporting import figures

    table = summarise_resamples(results, ["n_cells", "method"], ["auroc", "auprc"])
    long = table.melt(
        id_vars=["n_cells", "method"],
        value_vars=["auroc_mean", "auprc_mean"],
        var_name="metric",
        value_name="value",
    )
    long["metric"] = long["metric"].str.removesuffix("_mean")
    long["family"] = "ranking"
    long["subset"] = f"planted {what}, " + long["n_cells"].astype(str) + f" {size_label}"
    prevalence = float(results["prevalence"].mean())
    return section_part(
        summary=summary,
        tables=[
            TableBlock(
                f"Recovery of planted {what} (mean ± SD over replicates)",
                table[["n_cells", "method"]].assign(
                    AUROC=mean_sd(table, "auroc"),
                    AUPRC=mean_sd(table, "auprc"),
                    replicates=table["auroc_count"],
                ),
                f"AUROC (chance 0.5) and AUPRC (chance = prevalence {prevalence:.2f}). {caption}",
                max_rows=None,
            )
        ],
        figures=[
            figure_block(
                f"Recovery of planted {what} against data-set size",
                figures.benchmark_curves(
                    results,
                    chance={"auroc": 0.5, "auprc": prevalence},
                    size_label=f"{size_label} per data set",
                    title=f"Recovery of planted {what}",
                ),
            )
        ],
        metrics=metric_rows(
            long[["method", "family", "metric", "subset", "value"]],
            model,
            baselines=baselines,
            headline=long["n_cells"].eq(long["n_cells"].max()).to_numpy(),
        ),
    )


SHORTFALL_REASON = (
    "Why (docs/pipelines/vega.md, Small data): the planted shifts are small against the "
    "cell-to-cell spread of a module's activity; the module score averages the module's genes "
    "in every cell and sees them, while VEGA's encoder, with dropout after its hidden layers "
    "and on the latent mean and variance, recovers them less well. Removing that dropout "
    "closed part of the gap there but put a non-interferon module first on Kang, so it is not "
    "the default; the rest of the gap is not explained."
)


def auroc_shortfall(
    results: pd.DataFrame, model: str, reference: str, tolerance: float
) -> pd.DataFrame:
    """Per size: the model's and the reference's mean AUROC, the gap and whether it is within
    ``tolerance`` (issue #14's target: VEGA within 0.05 of the module score at every size)."""
    means = results.groupby(["n_cells", "method"])["auroc"].mean().unstack("method")
    gap = means[reference] - means[model]
    return pd.DataFrame(
        {
            "n_cells": means.index,
            f"{model} AUROC": means[model].to_numpy(),
            f"{reference} AUROC": means[reference].to_numpy(),
            "shortfall": gap.to_numpy(),
            f"within {tolerance}": (gap <= tolerance).to_numpy(),
        }
    )


def shortfall_statement(table: pd.DataFrame, model: str, reference: str, effect: float) -> str:
    """Where the model falls short of the reference, by how much, and why, from ``table``."""
    within = table.columns[-1]
    short = table[~table[within]]
    sizes = ", ".join(str(n) for n in table["n_cells"])
    if short.empty:
        return (
            f"{model}'s AUROC is {within} of the {reference} baseline's at every size "
            f"({sizes} cells; planted effect {effect})."
        )
    where = "; ".join(
        f"{row.n_cells} cells: {row[1]:.2f} against {row[2]:.2f} (short by {row.shortfall:.2f})"
        for row in short.itertuples(index=False)
    )
    first, last = table["shortfall"].iloc[0], table["shortfall"].iloc[-1]
    trend = "narrows" if last < first else "does not narrow"
    return (
        f"Where {model} falls short: its AUROC is not {within} of the {reference} baseline's at "
        f"{len(short)} of {len(table)} sizes (planted effect {effect}) — {where}. The gap "
        f"{trend} with more cells ({first:.2f} at {table['n_cells'].iloc[0]}, {last:.2f} at "
        f"{table['n_cells'].iloc[-1]}). {SHORTFALL_REASON}"
    )


def _shortfall_part(results: pd.DataFrame, params: dict[str, Any]) -> ReportSection:
    settings = params["shortfall"]
    model, reference = "vega", settings["reference"]
    table = auroc_shortfall(results, model, reference, settings["tolerance"])
    return section_part(
        summary=shortfall_statement(table, model, reference, params["dataset"]["effect"]),
        tables=[
            TableBlock(
                f"VEGA against the {reference} baseline on planted modules (mean AUROC)",
                table,
                f"shortfall: {reference} AUROC − VEGA AUROC; the target is a shortfall of at "
                f"most {settings['tolerance']} at every size.",
                max_rows=None,
            )
        ],
    )


def benchmark_part(
    modules: pd.DataFrame, grn: pd.DataFrame, params: dict[str, Any]
) -> ReportSection:
    """Planted modules (VEGA vs GSEA and module scores) and planted GRN edges (GPO-VAE vs
    effect sizes), beside chance."""
    parts = []
    if not modules.empty:
        dataset = params["dataset"]
        parts.append(
            _recovery_part(
                modules,
                model="vega",
                baselines=["module_score", "gsea"],
                what="differential modules",
                size_label="cells",
                summary=(
                    f"Planted modules: synthetic single cells (make_module_dataset) with "
                    f"{dataset['n_differential']} of {dataset['n_modules']} modules up-regulated "
                    f"(effect {dataset['effect']}) in stimulated cells; each method ranks "
                    "modules by its signed stimulated-vs-control score."
                ),
                caption=(
                    "vega: ln Bayes factor; module_score: Welch t of scanpy module scores; "
                    "gsea: NES of GSEA pre-rank on a Wilcoxon ranking."
                ),
            )
        )
        parts.append(_shortfall_part(modules, params))
    if not grn.empty:
        screen = params["grn"]["screen"]
        parts.append(
            _recovery_part(
                grn,
                model="gpo_vae",
                baselines=["effect_size"],
                what="GRN edges",
                size_label="cells per perturbation",
                summary=(
                    "Planted GRN: synthetic CRISPRi screens (make_perturbseq_from_grn) with "
                    f"{screen['n_regulators']} knocked-down regulators of "
                    f"{screen['n_targets_per_regulator']} targets each among "
                    f"{screen['n_genes']} genes; every regulator × gene pair is ranked."
                ),
                caption=(
                    "gpo_vae: edge probability σ(logit) of the full model; effect_size: |ATE| of "
                    "the target under the regulator's knock-down (training cells)."
                ),
            )
        )
    if not parts:
        return absent_part()
    for part in parts[1:]:
        parts[0].extend(part)
    return parts[0]


# --- planted-GRN benchmark (GPO-VAE) --------------------------------------------------------------

GRN_COLUMNS = ["n_cells", "replicate", "method", "auroc", "auprc", "prevalence"]


def _screen_input(n_cells: int, seed: int, gpo_params: dict[str, Any], params: dict[str, Any]):
    """A synthetic CRISPRi screen from a planted GRN, as the gpo_vae pipeline's model input."""
    from genevae.preprocessing.gpo_inputs import log_normalise_counts
    from genevae.preprocessing.perturbseq import split_cells
    from genevae.preprocessing.synthetic import make_perturbseq_from_grn

    screen = make_perturbseq_from_grn(n_cells_per_group=n_cells, seed=seed, **params["screen"])
    adata = screen.adata
    adata.X = log_normalise_counts(adata.layers["counts"])
    adata.obs["split"] = split_cells(adata.obs, seed=seed).astype("category")
    inputs = gpo_params["inputs"] | params["inputs"] | {"control_label": screen.control_label}
    return screen, gpo_nodes.build_model_input(adata, inputs)


def planted_grn_benchmark(gpo_params: dict[str, Any], benchmark: dict[str, Any]) -> pd.DataFrame:
    """AUROC/AUPRC of the planted regulator → target edges, GPO-VAE beside effect sizes.

    Screens come from ``make_perturbseq_from_grn``; GPO-VAE is trained through the gpo_vae
    pipeline's own nodes with its parameters plus ``params["model"]``/``params["training"]``,
    and scored like the effect-size baseline (|ATE| of training cells) on every
    regulator × node pair.
    """
    from genevae.analysis.grn import reference_network_metrics
    from genevae.pipelines.gpo_vae import evaluation as gpo_evaluation

    params = benchmark["grn"]
    if not (benchmark["enabled"] and params["enabled"]):
        return pd.DataFrame(columns=GRN_COLUMNS)
    training = gpo_params["training"] | {"checkpoint_dir": None, "progress_bar": False}
    rows = []
    for n_cells in params["sizes"]:
        for replicate in range(params["n_replicates"]):
            seed = params["seed"] + replicate
            screen, model_input = _screen_input(n_cells, seed, gpo_params, params)
            meta = info(model_input)
            with child_run(f"benchmark.grn.n{n_cells}_seed{seed}"):
                bundle, _, _ = gpo_nodes.train_gpo_vae(
                    model_input,
                    gpo_params["model"] | params["model"],
                    training | params["training"] | {"seed": seed},
                    gpo_params["full"]["variant"],
                )
            predictors = {
                "gpo_vae": gpo_nodes.grn_edges(bundle),
                "effect_size": gpo_evaluation.effect_size_edges(model_input),
            }
            regulators = meta["node_names"][: meta["n_perturbed"]]
            for method, edges in predictors.items():
                scores = reference_network_metrics(
                    edges, screen.edges, regulators, meta["node_names"]
                )
                rows.append(
                    [n_cells, replicate, method, scores["auroc"], scores["auprc"],
                     scores["random_baseline"]]
                )  # fmt: skip
    return pd.DataFrame(rows, columns=GRN_COLUMNS)
