"""Evidence beside every differential-activity claim: baselines, controls and stability.

A VEGA module call (|ln BF| above the threshold) is reported beside:

- the calls of two training-free methods on the same contrast (the module score through the
  same Bayes factor, and GSEA where it ran) and whether all of them agree (:func:`calls_agree`);
- a random-mask control: the call's empirical p against size-matched modules of models
  trained on shuffled masks (:func:`empirical_control_p`);
- its stability over replicates (Bayes-factor seeds, training seeds): ln BF mean ± SD per
  module and the overlap of the top-k modules (:func:`replicate_summary`).

Everything is a vectorised array operation over modules; no model is run here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genevae.errors import GenevaeInputError

_CHUNK = 512  # modules per block of the (modules × random modules) comparison


def call_direction(
    significant: np.ndarray | pd.Series, effect: np.ndarray | pd.Series
) -> np.ndarray:
    """+1 / −1 for a significant call up / down, 0 for no call, NaN where the method did not run.

    ``effect`` is the signed score whose sign is the direction (ln BF, GSEA's NES); NaN
    effect marks a module the method did not score.
    """
    effect = np.asarray(effect, dtype=float)
    called = np.asarray(significant, dtype=bool)
    return np.where(np.isnan(effect), np.nan, np.where(called, np.sign(effect), 0.0))


def calls_agree(reference: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """True where every other method that ran makes the same call as ``reference``.

    Calls are :func:`call_direction` values: the same direction, or no call by both, agree;
    a method that did not run (NaN) is left out rather than counted against the call.
    """
    reference = np.asarray(reference, dtype=float)
    agree = ~np.isnan(reference)
    for other in others:
        other = np.asarray(other, dtype=float)
        agree &= np.isnan(other) | (other == reference)
    return agree


def empirical_control_p(
    ln_bf: np.ndarray,
    n_genes: np.ndarray,
    random_ln_bf: np.ndarray,
    random_n_genes: np.ndarray,
    size_tolerance: float = 1.25,
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical p of each module's |ln BF| against its size-matched random modules.

    Size-matched: random modules (from every random mask) with n / t ≤ size ≤ n · t genes,
    where n is the module's size and t = ``size_tolerance`` ≥ 1. Shuffled masks keep every
    module's size, so a module's own shuffled twins always match.
    p = (1 + #{matched random |ln BF| ≥ observed |ln BF|}) / (1 + #matched).

    Returns:
        p (NaN where nothing matched) and the number of matched random modules, per module.
    """
    if size_tolerance < 1:
        raise GenevaeInputError(f"size_tolerance={size_tolerance} must be >= 1 (1 = same size).")
    observed = np.abs(np.asarray(ln_bf, dtype=float))
    sizes = np.asarray(n_genes, dtype=float)
    random_abs = np.abs(np.asarray(random_ln_bf, dtype=float))
    random_sizes = np.asarray(random_n_genes, dtype=float)
    n_matched = np.zeros(len(observed), dtype=int)
    n_exceeding = np.zeros(len(observed), dtype=int)
    for start in range(0, len(observed), _CHUNK):
        block = slice(start, start + _CHUNK)
        low, high = sizes[block, None] / size_tolerance, sizes[block, None] * size_tolerance
        matched = (random_sizes[None, :] >= low) & (random_sizes[None, :] <= high)
        n_matched[block] = matched.sum(axis=1)
        n_exceeding[block] = (matched & (random_abs[None, :] >= observed[block, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_matched > 0, (1.0 + n_exceeding) / (1.0 + n_matched), np.nan)
    return p, n_matched


def top_k_overlap(ln_bf: np.ndarray, k: int = 10) -> float:
    """Mean fraction of shared top-k modules (by |ln BF|) over all pairs of replicates.

    ``ln_bf`` is modules × replicates. 1 = every replicate names the same top k; NaN with
    fewer than two replicates.
    """
    values = np.abs(np.asarray(ln_bf, dtype=float))
    if values.ndim != 2:
        raise GenevaeInputError(f"ln_bf must be modules × replicates, got shape {values.shape}.")
    if k < 1:
        raise GenevaeInputError(f"k={k} must be >= 1.")
    n_modules, n_replicates = values.shape
    if n_replicates < 2:
        return float("nan")
    k = min(k, n_modules)
    top = np.argsort(-values, axis=0, kind="stable")[:k]
    member = np.zeros_like(values, dtype=float)
    np.put_along_axis(member, top, 1.0, axis=0)
    shared = member.T @ member / k
    pairs = np.triu_indices(n_replicates, 1)
    return float(shared[pairs].mean())


def replicate_summary(
    replicates: pd.DataFrame, k: int = 10, prefix: str = "ln_bf"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ln BF mean ± SD per module and top-k overlap per comparison, over replicates.

    Args:
        replicates: long table with comparison, replicate, module and ln_bf.
        k: size of the top list compared between replicates.
        prefix: names the per-module columns ``<prefix>_mean``, ``<prefix>_sd``.

    Returns:
        Per module: comparison, module, ``<prefix>_mean``, ``<prefix>_sd`` (sample SD, NaN
        for one replicate). Per comparison: comparison, n_replicates, k, top_k_overlap.
    """
    missing = {"comparison", "replicate", "module", "ln_bf"} - set(replicates.columns)
    if missing:
        raise GenevaeInputError(f"replicates lacks columns {sorted(missing)}.")
    per_module, per_comparison = [], []
    for comparison, rows in replicates.groupby("comparison", sort=False):
        wide = rows.pivot_table(index="module", columns="replicate", values="ln_bf", sort=False)
        per_module.append(
            pd.DataFrame(
                {
                    "comparison": comparison,
                    "module": wide.index,
                    f"{prefix}_mean": wide.mean(axis=1).to_numpy(),
                    # shifted by the first replicate: identical replicates give exactly 0
                    f"{prefix}_sd": wide.sub(wide.iloc[:, 0], axis=0)
                    .std(axis=1, ddof=1)
                    .to_numpy(),
                }
            )
        )
        per_comparison.append(
            {
                "comparison": comparison,
                "n_replicates": wide.shape[1],
                "k": min(k, len(wide)),
                "top_k_overlap": top_k_overlap(wide.to_numpy(), k),
            }
        )
    return pd.concat(per_module, ignore_index=True), pd.DataFrame(per_comparison)


def annotate_evidence(
    bf_table: pd.DataFrame,
    *,
    gsea: pd.DataFrame | None = None,
    random_modules: pd.DataFrame | None = None,
    ln_bf_threshold: float = 3.0,
    fdr_threshold: float = 0.05,
    size_tolerance: float = 1.25,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One comparison's Bayes-factor table with the calls of every method and the control.

    Args:
        bf_table: module, ln_bf, n_genes, is_significant (VEGA's call), module_score_ln_bf.
        gsea: module, fdr, nes of GSEA on the same contrast, or None where it did not run.
        random_modules: n_genes, ln_bf of the random-mask models' modules, or None.
        ln_bf_threshold: the module score's call is |ln BF| above it.
        fdr_threshold: GSEA's call is FDR below it.
        size_tolerance: see :func:`empirical_control_p`.
        alpha: a significant module passes the control when its empirical p is below it.

    Returns:
        ``bf_table`` plus gsea_fdr, gsea_nes, vega_call, module_score_call, gsea_call (+1 up,
        −1 down, 0 none, NaN not run), calls_agree, control_n_matched, control_empirical_p
        and control_pass.
    """
    missing = {"module", "ln_bf", "n_genes", "is_significant", "module_score_ln_bf"} - set(
        bf_table.columns
    )
    if missing:
        raise GenevaeInputError(f"bf_table lacks columns {sorted(missing)}.")
    table = bf_table.copy()
    gsea = pd.DataFrame(columns=["module", "fdr", "nes"]) if gsea is None else gsea
    by_module = gsea.set_index("module")
    table["gsea_fdr"] = table["module"].map(by_module["fdr"]).astype(float)
    table["gsea_nes"] = table["module"].map(by_module["nes"]).astype(float)
    table["vega_call"] = call_direction(table["is_significant"], table["ln_bf"])
    score = table["module_score_ln_bf"].astype(float)
    table["module_score_call"] = call_direction(score.abs() > ln_bf_threshold, score)
    table["gsea_call"] = call_direction(table["gsea_fdr"] < fdr_threshold, table["gsea_nes"])
    table["calls_agree"] = calls_agree(
        table["vega_call"], table["module_score_call"], table["gsea_call"]
    )
    random_modules = (
        pd.DataFrame(columns=["n_genes", "ln_bf"]) if random_modules is None else random_modules
    )
    p, n_matched = empirical_control_p(
        table["ln_bf"],
        table["n_genes"],
        random_modules["ln_bf"],
        random_modules["n_genes"],
        size_tolerance,
    )
    table["control_n_matched"] = n_matched
    table["control_empirical_p"] = p
    table["control_pass"] = table["is_significant"].astype(bool) & (p < alpha)
    return table
