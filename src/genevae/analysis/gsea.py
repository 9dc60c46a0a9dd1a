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
import scipy.sparse as sp

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
    if sp.issparse(matrix):
        in1 = (labels == group1).to_numpy()
        in2 = (labels == group2).to_numpy() if group2 is not None else ~in1
        scores, logfc = sparse_wilcoxon(matrix, in1, in2)
        return _ranked(pd.Series(scores, index=adata.var_names.astype(str)), logfc, tie_break)
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
    scores = pd.Series(table["scores"].to_numpy(dtype=float), index=genes)
    return _ranked(scores, table["logfoldchanges"].to_numpy(dtype=float), tie_break)


def _ranked(scores: pd.Series, logfc: np.ndarray, tie_break: str | None) -> pd.Series:
    """Scores highest first, ties broken by log fold change (``tie_break="logfc"``)."""
    scores = scores.rename("score")
    if tie_break == "logfc":
        scores = break_ties(scores, pd.Series(logfc, index=scores.index))
    elif tie_break is not None:
        raise GenevaeInputError(f"tie_break={tie_break!r} is not supported; use 'logfc' or None.")
    return scores.sort_values(ascending=False, kind="stable")


def sparse_wilcoxon(
    matrix: sp.spmatrix | sp.sparray,
    in1: np.ndarray,
    in2: np.ndarray,
    chunk_genes: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """scanpy's Wilcoxon z-scores (no tie correction) and log2 fold changes, from a sparse
    matrix without densifying it: per gene only the nonzeros are ranked.

    All zeros of a gene tie, so they share one average rank and only the nonzero values
    need sorting: O(nnz log nnz) per gene instead of scanpy's O(cells log cells) on a dense
    cells × genes chunk. Cells in neither group are left out, as scanpy's reference does.
    Genes go ``chunk_genes`` at a time, so the extra memory is that chunk's nonzeros.
    Returns float32 values, as scanpy stores them (equal scores stay equal ties).
    """
    from scipy.stats import rankdata

    cells = in1 | in2
    member = in1[cells]
    n1, n2 = int(member.sum()), int((~member).sum())
    n_genes = matrix.shape[1]
    rank_sum, sum1, sum2 = np.zeros(n_genes), np.zeros(n_genes), np.zeros(n_genes)
    for start in range(0, n_genes, chunk_genes):
        block = sp.csc_matrix(sp.csr_matrix(matrix)[:, start : start + chunk_genes][cells])
        for j in range(block.shape[1]):
            rows = block.indices[block.indptr[j] : block.indptr[j + 1]]
            values = block.data[block.indptr[j] : block.indptr[j + 1]].astype(np.float64)
            n_zero, n_negative = n1 + n2 - values.size, int((values < 0).sum())
            ranks = rankdata(values) + np.where(values > 0, n_zero, 0)
            in_group1 = member[rows]
            zero_rank = n_negative + (n_zero + 1) / 2.0
            rank_sum[start + j] = ranks[in_group1].sum() + (n1 - in_group1.sum()) * zero_rank
            sum1[start + j] = values[in_group1].sum()
            sum2[start + j] = values[~in_group1].sum()
    std_dev = np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    scores = np.nan_to_num((rank_sum - n1 * (n1 + n2 + 1) / 2.0) / std_dev)
    fold = (np.expm1(sum1 / max(n1, 1)) + 1e-9) / (np.expm1(sum2 / max(n2, 1)) + 1e-9)
    return scores.astype(np.float32), np.log2(fold).astype(np.float32)


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
