"""Gene-set enrichment baseline for VEGA's differential activity (paper Fig. 1).

Genes are ranked by a Wilcoxon test between two groups, the ranking goes through GSEA
pre-rank with the same gene sets as the VEGA mask, and the GSEA FDR is set against VEGA's
|ln BF| per module. Everything runs offline on a gene-set dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import gseapy
import numpy as np
import pandas as pd
import scanpy as sc

from genevae.analysis.comparisons import as_label
from genevae.errors import GenevaeInputError

NEG_LOG10_FDR_CAP = 5.0  # −log10(FDR = 0) is plotted at 5, as the paper


def wilcoxon_ranking(
    adata: ad.AnnData,
    groupby: str,
    group1: str,
    group2: str | None = None,
    *,
    layer: str | None = None,
    tie_break: Literal["logfc"] | None = "logfc",
) -> pd.Series:
    """Wilcoxon scores of every gene, group1 vs group2 (or vs the rest), highest first.

    Expects log-normalised expression in ``X`` (or ``layer``), like the paper's
    ``rank_genes_groups(method="wilcoxon")`` on log-normalised ``raw``. ``adata`` is not
    modified: the test runs on a light AnnData that shares the matrix.

    On sparse single-cell data many genes share a score (about half of them on the Kang
    monocytes: genes seen in a few cells get the same rank sums), and GSEA would order them
    at random. ``tie_break="logfc"`` orders tied genes by log fold change (see
    :func:`break_ties`); ``None`` returns scanpy's scores unchanged, as the paper's code.
    """
    if groupby not in adata.obs.columns:
        raise GenevaeInputError(
            f"obs has no column {groupby!r}; set groupby to one of {list(adata.obs.columns)}."
        )
    labels = adata.obs[groupby].astype(str)
    group1, group2 = as_label(group1), as_label(group2)  # YAML reads `1` as a number
    available = sorted(labels.unique())
    for name, group in (("group1", group1), ("group2", group2)):
        if group is not None and group not in available:
            raise GenevaeInputError(
                f"{name}={group!r} is not a level of obs[{groupby!r}]; available: {available}"
            )
    if group2 is None and len(available) < 2:
        raise GenevaeInputError(f"obs[{groupby!r}] has a single level; nothing to compare with.")
    matrix = adata.X if layer is None else adata.layers[layer]
    light = ad.AnnData(
        X=matrix,
        obs=pd.DataFrame({groupby: pd.Categorical(labels)}, index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    sc.tl.rank_genes_groups(
        light,
        groupby,
        groups=[group1],
        reference=group2 if group2 is not None else "rest",
        method="wilcoxon",
        n_genes=light.n_vars,
        use_raw=False,
    )
    table = sc.get.rank_genes_groups_df(light, group=group1)
    genes = table["names"].astype(str).to_numpy()
    scores = pd.Series(table["scores"].to_numpy(dtype=float), index=genes, name="score")
    if tie_break == "logfc":
        logfc = pd.Series(table["logfoldchanges"].to_numpy(dtype=float), index=genes)
        scores = break_ties(scores, logfc)
    elif tie_break is not None:
        raise GenevaeInputError(f"tie_break={tie_break!r} is not supported; use 'logfc' or None.")
    return scores.sort_values(ascending=False, kind="stable")


def break_ties(scores: pd.Series, secondary: pd.Series, spread: float = 1e-3) -> pd.Series:
    """``scores`` made distinct: tied genes ordered by ``secondary`` (high first), then name.

    Each block of equal scores is spread upwards over less than ``spread`` × the smallest gap
    between distinct scores, so no gene changes place with a gene of another score and the
    values GSEA weights by change by less than that. Genes equal on both (e.g. never
    expressed in the compared cells) carry no order; they get the gene-name order.
    """
    frame = pd.DataFrame(
        {
            "score": scores.to_numpy(dtype=float),
            "secondary": secondary.reindex(scores.index).fillna(0.0).to_numpy(dtype=float),
            "gene": scores.index.astype(str),
        }
    ).sort_values(["score", "secondary", "gene"], ascending=[False, False, True], kind="stable")
    distinct = np.unique(frame["score"])
    gap = float(np.diff(distinct).min()) if len(distinct) > 1 else 1.0
    blocks = frame.groupby("score", sort=False)["score"]
    size = blocks.transform("size").to_numpy()
    position = blocks.cumcount().to_numpy()  # 0 for the gene that should come first
    values = frame["score"].to_numpy() + gap * spread * (size - 1 - position) / size
    return pd.Series(values, index=pd.Index(frame["gene"].to_numpy()), name=scores.name)


def run_prerank(
    ranking: pd.Series,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    permutation_num: int = 1000,
    min_size: int = 5,
    max_size: int = 1000,
    seed: int = 0,
    threads: int = 1,
) -> pd.DataFrame:
    """GSEA pre-rank (gseapy) of a gene ranking against a gene-set dict, offline.

    Defaults are the paper's (1000 permutations, set sizes 5–1000 in the ranking).

    Returns:
        One row per tested set: module, es, nes, pval, fdr, set_size (genes of the set in the
        ranking) and lead_genes, sorted by FDR.
    """
    clean = ranking.dropna()
    if clean.empty:
        raise GenevaeInputError("The gene ranking is empty (or all NaN); nothing to test.")
    if clean.index.has_duplicates:
        raise GenevaeInputError(
            "The gene ranking has duplicate gene names; make them unique "
            "(e.g. adata.var_names_make_unique()) before ranking."
        )
    if not gene_sets:
        raise GenevaeInputError("gene_sets is empty; pass a {set name: [genes]} dict.")
    result = gseapy.prerank(
        rnk=clean.sort_values(ascending=False),
        gene_sets={name: list(genes) for name, genes in gene_sets.items()},
        permutation_num=permutation_num,
        min_size=min_size,
        max_size=max_size,
        seed=seed,
        threads=threads,
        outdir=None,
        no_plot=True,
        verbose=False,
    )
    raw = result.res2d
    table = pd.DataFrame(
        {
            "module": raw["Term"].astype(str),
            "es": raw["ES"].astype(float),
            "nes": raw["NES"].astype(float),
            "pval": raw["NOM p-val"].astype(float),
            "fdr": raw["FDR q-val"].astype(float),
            "set_size": raw["Tag %"].astype(str).str.split("/").str[1].astype(int),
            "lead_genes": raw["Lead_genes"].astype(str),
        }
    )
    return table.sort_values(["fdr", "pval"], kind="stable").reset_index(drop=True)


def compare_gsea_with_bayes_factors(
    gsea_table: pd.DataFrame,
    bf_table: pd.DataFrame,
    *,
    exclude_prefix: str | None = "UNANNOTATED",
) -> pd.DataFrame:
    """Join GSEA FDR and VEGA ln BF per module, as the paper's Fig. 1 scatter.

    Modules GSEA did not test (size filters) get FDR 1; −log10(0) is capped at 5. Fully
    connected extra nodes (names starting with ``exclude_prefix``) are dropped.

    Returns:
        module, fdr, neg_log10_fdr, ln_bf, abs_ln_bf, set_size (genes of the module in the
        data, from the Bayes-factor table) and nes (GSEA's normalised enrichment score, its
        sign the direction; NaN when untested or when ``gsea_table`` has no ``nes``).
    """
    for name, table, columns in (
        ("gsea_table", gsea_table, ("module", "fdr")),
        ("bf_table", bf_table, ("module", "ln_bf", "n_genes")),
    ):
        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise GenevaeInputError(
                f"{name} lacks columns {missing}; pass the output of "
                f"{'run_prerank' if name == 'gsea_table' else 'differential_activity'}."
            )
    modules = bf_table[["module", "ln_bf", "n_genes"]]
    if exclude_prefix:
        modules = modules[~modules["module"].astype(str).str.startswith(exclude_prefix)]
    gsea_columns = ["module", "fdr"] + (["nes"] if "nes" in gsea_table.columns else [])
    merged = modules.merge(gsea_table[gsea_columns], on="module", how="left")
    fdr = merged["fdr"].fillna(1.0).to_numpy(dtype=float)
    with np.errstate(divide="ignore"):
        neg_log10 = -np.log10(fdr)
    return pd.DataFrame(
        {
            "module": merged["module"].to_numpy(),
            "fdr": fdr,
            # + 0.0 turns −0.0 (FDR 1) into 0.0
            "neg_log10_fdr": np.where(np.isinf(neg_log10), NEG_LOG10_FDR_CAP, neg_log10) + 0.0,
            "ln_bf": merged["ln_bf"].to_numpy(dtype=float),
            "abs_ln_bf": merged["ln_bf"].abs().to_numpy(dtype=float),
            "set_size": merged["n_genes"].to_numpy(),
            "nes": merged.get("nes", pd.Series(np.nan, index=merged.index)).to_numpy(float),
        }
    )


def gsea_for_contrast(
    cells: ad.AnnData,
    groupby: str,
    group1: str,
    group2: str | None,
    gene_sets: Mapping[str, Sequence[str]],
    bf_table: pd.DataFrame,
    *,
    prerank: Mapping[str, object] | None = None,
    exclude_prefix: str | None = "UNANNOTATED",
) -> pd.DataFrame:
    """GSEA of one contrast beside the model's ln BF: Wilcoxon ranking → prerank → join.

    The one path the vega pipeline's GSEA node and the evaluation report both take;
    ``prerank`` holds :func:`run_prerank`'s options.
    """
    ranking = wilcoxon_ranking(cells, groupby, group1, group2)
    gsea = run_prerank(ranking, gene_sets, **dict(prerank or {}))
    return compare_gsea_with_bayes_factors(gsea, bf_table, exclude_prefix=exclude_prefix)
