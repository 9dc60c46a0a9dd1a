"""Study: does VEGA find the interferon response on small panels? (issue #14, item 3)

    python -m benchmarks.vega_small_data                 # defaults: 5 Kang subsets + planted
    python -m benchmarks.vega_small_data --factors       # also each factor alone, from the paper
    python -m benchmarks.run_all --only vega_small_data  # the same as the first line

Kang subsets: Kang et al.'s PBMC (IFN-β stimulated vs control, scGen's 1,975-cell file),
preprocessed as the data_processing pipeline does (``preprocess_scrna``), then 300–1,000
random cells × the 250–500 genes of highest log-expression variance among the genes of at
least one Reactome set (a panel that keeps pathway coverage; scanpy's dispersion-based
selection drops most interferon-stimulated genes because they are highly expressed). Modules:
Reactome sets with ≥ 5 panel genes plus VEGA's extra node(s). For each subset VEGA is trained
with ``conf/base/parameters_vega.yml`` (or the paper's settings, or one factor changed) and
the stimulated-vs-control Bayes factors (vanilla) are ranked by ln BF (up in stimulated
first; extra nodes excluded), with both estimators of ``analysis.bayes_factor.estimator``:
``analytic`` (the default: exact Gaussian pair probabilities over all cell pairs) and
``sampling`` (the paper's: 5,000 cells per group, one posterior draw each, 10,000 pairs),
each under Bayes-factor seeds 0–4; the analytic one also over 20 resamples of the cells
(what the data leave once the Monte-Carlo noise is gone). The baseline runs the same Bayes
factor, with the same estimator, on a training-free per-cell module score: the mean
log-expression of the module's genes.

Planted modules: the evaluation pipeline's benchmark (``planted_module_benchmark``:
synthetic cells with planted up-regulated modules; VEGA's ln BF beside module scores and
GSEA), at 1,000 cells for several effect sizes.

Results: ``benchmarks/results/vega_small_data.json``; docs/pipelines/vega.md discusses them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import yaml

from benchmarks.common import check_scale, quiet, write_result

NAME = "vega_small_data"
IFN_MODULE = "REACTOME_INTERFERON_ALPHA_BETA_SIGNALING"
INTERFERON_FAMILY = re.compile("INTERFERON|IFN|ISG15|ANTIVIRAL")
"""Reactome modules of the interferon response (names with INTERFERON, IFN, ISG15, ANTIVIRAL)."""
EXTRA_NODE_PREFIX = "UNANNOTATED"
BF_SEEDS = 5
ESTIMATORS = ("analytic", "sampling")
"""Each variant's Bayes factors are computed with both; the first is the pipeline default."""
CONF = Path(__file__).resolve().parents[1] / "conf" / "base"
PAPER = {
    "model.dropout": 0.5,
    "model.z_dropout": 0.5,
    "model.likelihood": "gaussian",
    "training.max_epochs": 500,
    "training.learning_rate": 1e-4,
    "training.weight_decay": 5e-4,
    "training.loss_reduction": "sum",
    "training.early_stopping_patience": 10,
    "validation_fraction": 0.2,
    "add_nodes": 1,
}
"""The paper's runs (models.md §2.4–2.5), whatever conf/base says now."""


@dataclass(frozen=True)
class Subset:
    n_cells: int
    n_genes: int
    seed: int


@dataclass(frozen=True)
class Sizes:
    subsets: tuple[Subset, ...]
    n_samples: int
    n_pairs: int
    planted_effects: tuple[float, ...]
    planted_cells: int
    planted_replicates: int
    cell_bootstraps: int
    """Resamples of the cells (within each group) for the analytic estimator's spread."""
    max_epochs: int | None = None
    """Caps every training (toy runs only); ``None`` keeps the settings' own."""


SIZES = {
    "full": Sizes(
        subsets=(
            Subset(300, 250, 0),
            Subset(450, 300, 1),
            Subset(600, 250, 2),
            Subset(800, 400, 3),
            Subset(1000, 500, 4),
        ),
        n_samples=5000,
        n_pairs=10_000,
        planted_effects=(0.03, 0.06, 0.12),
        planted_cells=1000,
        planted_replicates=2,
        cell_bootstraps=20,
    ),
    "toy": Sizes(
        subsets=(Subset(120, 80, 0),),
        n_samples=200,
        n_pairs=500,
        planted_effects=(0.5,),
        planted_cells=60,
        planted_replicates=1,
        cell_bootstraps=2,
        max_epochs=3,
    ),
}


def vega_parameters(
    overrides: dict[str, Any] | None = None, max_epochs: int | None = None
) -> dict[str, Any]:
    """``vega`` of conf/base/parameters_vega.yml with dotted overrides (``"model.dropout"``).

    ``add_nodes`` is a mask setting, not a vega parameter: it is left out here.
    """
    params = yaml.safe_load((CONF / "parameters_vega.yml").read_text())["vega"]
    for key, value in (overrides or {}).items():
        if key == "add_nodes":
            continue
        *sections, name = key.split(".")
        target = params
        for section in sections:
            target = target[section]
        target[name] = value
    params["training"] |= {"checkpoint_dir": None, "resume": False, "progress_bar": False}
    if max_epochs is not None:
        params["training"]["max_epochs"] = max_epochs
    return params


def kang_processed() -> ad.AnnData:
    """Kang et al.'s PBMC file, preprocessed with the data_processing defaults."""
    from genevae.datasets.fetch import fetch, project_root
    from genevae.preprocessing.scrna import preprocess_scrna

    path = fetch("kang2018_pbmc", raw_dir=project_root() / "data" / "01_raw", progress=False)
    processed, _ = preprocess_scrna(ad.read_h5ad(path))
    return processed


def reactome_gene_sets() -> dict[str, list[str]]:
    from genevae.datasets.fetch import fetch, project_root
    from genevae.preprocessing.genesets import read_gmt

    return read_gmt(
        fetch("reactome_vega", raw_dir=project_root() / "data" / "01_raw", progress=False)
    )


def panel(full: ad.AnnData, gene_sets: dict[str, list[str]], subset: Subset) -> ad.AnnData:
    """Random cells × the most variable (log-expression variance) Reactome genes."""
    rng = np.random.default_rng(subset.seed)
    cells = full[np.sort(rng.choice(full.n_obs, subset.n_cells, replace=False))]
    annotated = {gene for genes in gene_sets.values() for gene in genes}
    cells = cells[:, cells.var_names.isin(list(annotated))]
    x = cells.X.toarray() if hasattr(cells.X, "toarray") else np.asarray(cells.X)
    top = np.sort(np.argsort(-x.var(axis=0), kind="stable")[: subset.n_genes])
    return cells[:, top].copy()


def module_mask(cells: ad.AnnData, gene_sets: dict[str, list[str]], add_nodes: int) -> pd.DataFrame:
    """Genes × modules: Reactome sets with ≥ 5 panel genes plus ``add_nodes`` extra nodes."""
    from genevae.preprocessing.genesets import build_gene_module_mask

    built = build_gene_module_mask(cells.var_names, gene_sets, min_genes=5, add_nodes=add_nodes)
    return pd.DataFrame(built.mask, index=cells.var_names, columns=built.module_names)


def module_score_sampler(cells: ad.AnnData, mask: pd.DataFrame) -> Callable:
    """Cell indices → per-cell mean log-expression of each module's genes (no noise)."""
    x = cells.X.toarray() if hasattr(cells.X, "toarray") else np.asarray(cells.X)
    weights = mask.to_numpy(dtype=np.float64)
    scores = x @ (weights / np.maximum(weights.sum(axis=0), 1.0))
    return lambda indices: scores[np.asarray(indices)]


def ranking(table: pd.DataFrame) -> dict[str, Any]:
    """Rank and ln BF of the IFN α/β module, and the first module, ordered by ln BF (up first).

    Ties (ln BF saturates when every pair agrees) are broken by the standardised effect, as
    the pipeline's table does. ``ifn_rank_by_effect_size`` ranks by that effect alone.
    """
    modules = table[~table["module"].str.startswith(EXTRA_NODE_PREFIX)]
    ordered = modules.sort_values(["ln_bf", "effect_size"], ascending=False, kind="stable")
    names = ordered["module"].tolist()
    by_effect = modules.sort_values("effect_size", ascending=False, kind="stable")["module"]
    extra = table.loc[table["module"].str.startswith(EXTRA_NODE_PREFIX), "ln_bf"]
    result = {
        "first_module": names[0],
        "interferon_family_first": bool(INTERFERON_FAMILY.search(names[0])),
        "top5": names[:5],
        "top5_ln_bf": [round(float(v), 3) for v in ordered["ln_bf"].iloc[:5]],
        "top5_mean_diff": [round(float(v), 3) for v in ordered["mean_diff"].iloc[:5]],
        "top5_effect_size": [round(float(v), 3) for v in ordered["effect_size"].iloc[:5]],
        "n_modules": len(names),
        "extra_node_ln_bf": [round(float(v), 3) for v in extra],
        "ifn_rank": None,
        "ifn_ln_bf": None,
        "ifn_rank_by_effect_size": None,
    }
    if IFN_MODULE in names:
        row = ordered[ordered["module"] == IFN_MODULE].iloc[0]
        result |= {
            "ifn_rank": names.index(IFN_MODULE) + 1,
            "ifn_ln_bf": float(row["ln_bf"]),
            "ifn_rank_by_effect_size": by_effect.tolist().index(IFN_MODULE) + 1,
        }
    return result


def stimulated_vs_control(
    sampler: Callable, cells: ad.AnnData, mask: pd.DataFrame, sizes: Sizes, estimator: str
) -> dict[str, Any]:
    """The pipeline's Bayes factor (vanilla) with ``estimator`` on ``sampler``, ranked.

    Seed 0 gives the reported ranking; seeds 0–4 the IFN α/β rank's spread over the
    Bayes factor's own sampling of cells and pairs (none for ``analytic`` over all pairs).
    """
    from genevae.analysis.bayes_factor import differential_activity

    labels = cells.obs["condition"].astype(str).to_numpy()
    rankings = [
        ranking(
            differential_activity(
                sampler,
                labels,
                "stimulated",
                "control",
                estimator=estimator,
                n_samples=sizes.n_samples,
                n_pairs=sizes.n_pairs,
                seed=seed,
                module_names=list(mask.columns),
                n_genes_per_module=mask.sum(axis=0).to_numpy(),
            )
        )
        for seed in range(BF_SEEDS)
    ]
    result = rankings[0] | {"ifn_rank_over_bf_seeds": [r["ifn_rank"] for r in rankings]}
    if estimator == "analytic":
        result |= cell_bootstraps(sampler, cells, mask, sizes.cell_bootstraps, result["top5"])
    return result


def cell_bootstraps(
    sampler: Callable, cells: ad.AnnData, mask: pd.DataFrame, n_resamples: int, top: list[str]
) -> dict[str, Any]:
    """The analytic Bayes factor when the cells are resampled with replacement in each group.

    The analytic estimator has no Monte-Carlo noise left, so this is the spread that the
    cells themselves leave: the IFN α/β rank per resample and the SD of the ``top`` modules'
    ln BF (rank differences within it are not resolved by the data).
    """
    from genevae.analysis.bayes_factor import GaussianEncoder, differential_activity

    labels = cells.obs["condition"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    groups = [np.flatnonzero(labels == group) for group in ("stimulated", "control")]
    ranks, ln_bfs = [], []
    for _ in range(n_resamples):
        rows = np.concatenate([rng.choice(group, len(group)) for group in groups])
        resampled: Callable = lambda i, rows=rows: sampler(rows[np.asarray(i)])  # noqa: E731
        if hasattr(sampler, "moments"):
            resampled = GaussianEncoder(
                resampled, lambda i, rows=rows: sampler.moments(rows[np.asarray(i)])
            )
        table = differential_activity(
            resampled,
            labels[rows],
            "stimulated",
            "control",
            module_names=list(mask.columns),
            n_genes_per_module=mask.sum(axis=0).to_numpy(),
        )
        ranks.append(ranking(table)["ifn_rank"])
        ln_bfs.append(table.set_index("module").loc[top, "ln_bf"].to_numpy())
    return {
        "ifn_rank_over_cell_bootstraps": ranks,
        "top5_ln_bf_bootstrap_sd": [round(float(v), 3) for v in np.std(ln_bfs, axis=0)],
    }


def estimator_results(
    sampler: Callable, cells: ad.AnnData, mask: pd.DataFrame, sizes: Sizes
) -> dict[str, dict[str, Any]]:
    """``stimulated_vs_control`` under each estimator, keyed by estimator."""
    return {
        estimator: stimulated_vs_control(sampler, cells, mask, sizes, estimator)
        for estimator in ESTIMATORS
    }


def vega_result(
    cells: ad.AnnData, mask: pd.DataFrame, params: dict[str, Any], sizes: Sizes
) -> dict[str, Any]:
    """Train VEGA through the pipeline's node and rank its Bayes factors (each estimator)."""
    from genevae.analysis.bayes_factor import latent_sampler
    from genevae.pipelines.common import expression_data
    from genevae.pipelines.vega.nodes import train_vega

    start = time.perf_counter()
    with quiet():
        bundle, history, _ = train_vega(cells, mask, params)
    seconds = time.perf_counter() - start
    x = expression_data(cells).arrays["x"]
    sampler = latent_sampler(bundle.model, x, seed=0)
    epochs = int(history["epoch"].max()) + 1
    steps_per_epoch = -(-bundle.metadata["n_train"] // params["training"]["batch_size"])
    return (
        estimator_results(sampler, cells, mask, sizes)
        | posterior_summary(bundle.model, x, cells, list(mask.columns))
        | {
            "epochs": epochs,
            "optimizer_steps": epochs * steps_per_epoch,
            "train_seconds": round(seconds, 1),
        }
    )


def posterior_summary(
    model: Any, x: Any, cells: ad.AnnData, module_names: list[str]
) -> dict[str, float]:
    """Median posterior SD over cells × modules, and the IFN α/β shift in those SD units.

    The Bayes factor compares one posterior draw per cell, so a shift well below the
    posterior SD gives a weak ln BF however clear the means are.
    """
    import torch

    model.eval()
    dense = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    with torch.no_grad():
        mean, logvar = model.inference({"x": torch.as_tensor(dense, dtype=torch.float32)})
    sd = torch.exp(0.5 * logvar).numpy()
    result = {"posterior_sd_median": round(float(np.median(sd)), 4)}
    if IFN_MODULE in module_names:
        k = module_names.index(IFN_MODULE)
        stimulated = (cells.obs["condition"].astype(str) == "stimulated").to_numpy()
        shift = mean[stimulated, k].mean() - mean[~stimulated, k].mean()
        result["ifn_shift_in_posterior_sd"] = round(float(shift / np.median(sd[:, k])), 3)
    return result


def kang_study(sizes: Sizes, variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per subset: the module score's ranking and VEGA's under every variant."""
    full, gene_sets = kang_processed(), reactome_gene_sets()
    rows = []
    for subset in sizes.subsets:
        cells = panel(full, gene_sets, subset)
        masks: dict[int, pd.DataFrame] = {}
        row: dict[str, Any] = asdict(subset)
        for name, overrides in variants.items():
            add_nodes = int(overrides.get("add_nodes", 1))
            if add_nodes not in masks:
                masks[add_nodes] = module_mask(cells, gene_sets, add_nodes)
            mask = masks[add_nodes]
            row[name] = vega_result(
                cells, mask, vega_parameters(overrides, sizes.max_epochs), sizes
            )
            print(json.dumps({"subset": asdict(subset), name: row[name]}), flush=True)
        mask = masks[1] if 1 in masks else module_mask(cells, gene_sets, 1)
        row["ifn_module_genes"] = int(mask[IFN_MODULE].sum()) if IFN_MODULE in mask else 0
        row["module_score"] = estimator_results(
            module_score_sampler(cells, mask), cells, mask, sizes
        )
        rows.append(row)
    return rows


def planted_study(sizes: Sizes, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean AUROC/AUPRC per method and effect size, from the evaluation's planted benchmark."""
    from genevae.pipelines.evaluation.benchmark import planted_module_benchmark

    evaluation = yaml.safe_load((CONF / "parameters_evaluation.yml").read_text())["evaluation"]
    rows = []
    for effect in sizes.planted_effects:
        params = copy.deepcopy(evaluation["benchmark"])
        params |= {"sizes": [sizes.planted_cells], "n_replicates": sizes.planted_replicates}
        params["dataset"]["effect"] = effect
        if sizes.max_epochs is not None:
            params["training"]["max_epochs"] = sizes.max_epochs
        with quiet():
            table = planted_module_benchmark(vega_parameters(overrides, sizes.max_epochs), params)
        means = table.groupby("method")[["auroc", "auprc"]].mean()
        for method, values in means.iterrows():
            rows.append({"effect": effect, "method": method, **values.round(3).to_dict()})
    return rows


def factor_variants() -> dict[str, dict[str, Any]]:
    """The paper's settings, then each candidate cause changed alone."""
    return {
        "paper": PAPER,
        "paper+no_extra_node": PAPER | {"add_nodes": 0},
        "paper+dropout_0.1_z_0": PAPER | {"model.dropout": 0.1, "model.z_dropout": 0.0},
        "paper+loss_mean": PAPER | {"training.loss_reduction": "mean"},
        "paper+no_early_stopping": PAPER | {"training.early_stopping_patience": None},
        "paper+nb_likelihood": PAPER | {"model.likelihood": "nb", "model.positive_decoder": False},
        "paper+learning_rate_1e-3": PAPER | {"training.learning_rate": 1e-3},
    }


def summary(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Per variant and estimator: subsets with an interferon module first / IFN α/β ranked
    no worse than the module score under the same estimator."""
    result = {}
    for estimator in ESTIMATORS:
        for name in variants:
            entries = [(row[name][estimator], row["module_score"][estimator]) for row in rows]
            first = [entry["interferon_family_first"] for entry, _ in entries]
            no_worse = [
                entry["ifn_rank"] is not None and entry["ifn_rank"] <= score["ifn_rank"]
                for entry, score in entries
            ]
            result[f"{name}, {estimator}"] = {
                "interferon_family_first": f"{sum(first)}/{len(rows)}",
                "ifn_rank_no_worse_than_module_score": f"{sum(no_worse)}/{len(rows)}",
                "ifn_ranks": [entry["ifn_rank"] for entry, _ in entries],
            }
        result[f"module_score, {estimator}"] = {
            "ifn_ranks": [row["module_score"][estimator]["ifn_rank"] for row in rows]
        }
    return result


def run(
    scale: str,
    factors: bool = False,
    n_subsets: int | None = None,
    planted: bool = True,
    overrides: dict[str, Any] | None = None,
    paper: bool = True,
) -> dict[str, Any]:
    """The study at ``scale``: VEGA's defaults and the paper's settings on every subset.

    ``factors`` adds the one-factor-at-a-time variants, ``n_subsets`` keeps the first subsets
    only, ``planted=False`` skips the planted-module benchmark, ``overrides`` (dotted keys)
    change the defaults (the "defaults" variant and the planted run), ``paper=False`` skips
    the paper's settings.
    """
    check_scale(scale)
    sizes = SIZES[scale]
    sizes = replace(sizes, subsets=sizes.subsets[:n_subsets])
    overrides = dict(overrides or {})
    variants = {"defaults": overrides}
    if factors:
        variants |= factor_variants()
    elif paper:
        variants["paper"] = PAPER
    rows = kang_study(sizes, variants)
    return {
        "scale": scale,
        "sizes": asdict(sizes),
        "vega_defaults": vega_parameters(overrides),
        "variants": list(variants),
        "kang_subsets": rows,
        "summary": summary(rows, list(variants)),
        "planted_modules": planted_study(sizes, overrides) if planted else [],
    }


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.dropout=0.1"`` → ``("model.dropout", 0.1)`` (the value read as YAML)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def markdown_table(rows: list[dict[str, Any]], variants: list[str]) -> str:
    """Per subset: the IFN α/β rank (ln BF), first module and ranks over Bayes-factor seeds
    of each variant and the module score, under each estimator."""

    def cell(entry: dict[str, Any]) -> str:
        ln_bf = "–" if entry["ifn_ln_bf"] is None else f"{entry['ifn_ln_bf']:.2f}"
        first = entry["first_module"].removeprefix("REACTOME_")
        seeds = ", ".join(str(rank) for rank in entry["ifn_rank_over_bf_seeds"])
        return f"{entry['ifn_rank']} ({ln_bf}); {first}; seeds {seeds}"

    columns = [
        (name, estimator) for estimator in ESTIMATORS for name in [*variants, "module_score"]
    ]
    lines = [
        "| cells × genes (seed) | " + " | ".join(f"{n}, {e}" for n, e in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in rows:
        label = f"{row['n_cells']} × {row['n_genes']} ({row['seed']})"
        cells = " | ".join(cell(row[name][estimator]) for name, estimator in columns)
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vega_small_data", description=__doc__
    )
    parser.add_argument("--scale", choices=["full", "toy"], default="full")
    parser.add_argument("--factors", action="store_true", help="also one factor at a time")
    parser.add_argument("--subsets", type=int, default=None, help="only the first N subsets")
    parser.add_argument("--no-planted", action="store_true", help="skip the planted modules")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper's settings")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--name", default=NAME, help="result file name (without .json)")
    parser.add_argument(
        "--set",
        type=parse_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a default, e.g. model.dropout=0.1 (repeatable)",
    )
    args = parser.parse_args(argv)
    result = run(
        args.scale,
        args.factors,
        args.subsets,
        planted=not args.no_planted,
        overrides=dict(args.set),
        paper=not args.no_paper,
    )
    path = write_result(args.name, result, args.results_dir)
    print(json.dumps(result["summary"] | {"planted_modules": result["planted_modules"]}, indent=2))
    print(markdown_table(result["kang_subsets"], list(result["variants"])))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
