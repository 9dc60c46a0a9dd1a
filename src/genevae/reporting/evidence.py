"""VEGA's module calls as a biologist reads them: the evidence behind each top module at a glance.

The vega pipeline's ``differential_evidence`` table holds, per module, the calls of the
training-free baselines (module score, GSEA), the random-mask control and the ln BF over
seeds (:mod:`genevae.analysis.evidence`). Here the top significant modules of each
comparison become one compact table with a one-line verdict each (which calls the control
and the baselines back, which they do not), and the stability and held-out reconstruction
become a few summary sentences. Both the per-model report and the evaluation report use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from genevae.reporting.sections import TableBlock

BF_SEEDS = "ln_bf_bayes_factor_seed"
TRAINING_SEEDS = "ln_bf_training_seed"
_BASELINES = {"module_score_call": "module score", "gsea_call": "GSEA"}
_NAMED = {"module_score_call": "the module score", "gsea_call": "GSEA"}
_REPLICATE_KINDS = {"bayes_factor_seed": "Bayes-factor seeds", "training_seed": "training seeds"}


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _control_phrase(row: Mapping[str, object]) -> tuple[bool | None, str]:
    """Whether the module beats its size-matched random modules, and how to say it."""
    p = row.get("control_empirical_p")
    if not _finite(p):
        return None, "no random-mask control"
    if bool(row.get("control_pass")):
        return True, f"beats its size-matched random modules (p = {p:.3f})"
    return False, f"random modules of its size score as high (p = {p:.2f})"


def _baseline_phrase(row: Mapping[str, object]) -> tuple[bool, str]:
    """Whether every baseline that ran makes VEGA's call, and each one's call in words."""
    own = row.get("vega_call")
    words, agree = [], True
    for column, name in _BASELINES.items():
        call = row.get(column)
        if not _finite(call):
            words.append(f"{name} not run")
        elif call == own:
            words.append(f"{name} agrees")
        else:
            agree = False
            words.append(f"{name} {'makes no call' if call == 0 else 'calls the opposite'}")
    return agree, ", ".join(words)


def _stability_phrase(row: Mapping[str, object], threshold: float) -> str:
    """A warning when the ln BF over seeds comes within one SD of the call threshold."""
    for prefix, what in ((BF_SEEDS, "Bayes-factor"), (TRAINING_SEEDS, "training")):
        mean, sd = row.get(f"{prefix}_mean"), row.get(f"{prefix}_sd")
        if _finite(mean) and _finite(sd) and abs(mean) - sd < threshold:
            return f"; unstable over {what} seeds (ln BF {mean:.1f} ± {sd:.1f})"
    return ""


def module_verdict(row: Mapping[str, object], ln_bf_threshold: float = 3.0) -> str:
    """One line on a significant module: backed, partly backed or not backed, and by what.

    Backed: it beats its size-matched random modules and every baseline that ran makes the
    same call; partly backed: one of the two; not backed: neither (a control that did not
    run backs nothing).
    """
    control, control_words = _control_phrase(row)
    agree, baseline_words = _baseline_phrase(row)
    if control is True and agree:
        label = "backed"
    elif control is True or agree:
        label = "partly backed"
    else:
        label = "not backed"
    return f"{label}: {control_words}; {baseline_words}{_stability_phrase(row, ln_bf_threshold)}"


def _mean_sd(table: pd.DataFrame, prefix: str) -> list[str]:
    pairs = zip(table[f"{prefix}_mean"], table[f"{prefix}_sd"], strict=True)
    return [
        "–" if not _finite(m) else f"{m:.2f} ± {sd:.2f}" if _finite(sd) else f"{m:.2f}"
        for m, sd in pairs
    ]


def top_evidence(
    evidence: pd.DataFrame, n_top: int = 10, ln_bf_threshold: float = 3.0
) -> pd.DataFrame:
    """The ``n_top`` significant modules of one comparison by |ln BF|, as a readable table."""
    called = evidence[evidence["is_significant"].astype(bool)]
    top = called.reindex(called["ln_bf"].abs().sort_values(ascending=False).index).head(n_top)
    table = pd.DataFrame(
        {
            "module": top["module"],
            "ln BF": top["ln_bf"],
            "module score ln BF": top["module_score_ln_bf"],
            "GSEA NES": top["gsea_nes"],
            "GSEA FDR": top["gsea_fdr"],
            "baselines agree": top["calls_agree"].astype(bool),
            "control p": top["control_empirical_p"],
            "passes control": top["control_pass"].astype(bool),
        }
    )
    for prefix, name in ((BF_SEEDS, "BF seeds"), (TRAINING_SEEDS, "training seeds")):
        if f"{prefix}_mean" in top:
            table[f"ln BF over {name} (mean ± SD)"] = _mean_sd(top, prefix)
    records = top.to_dict("records")
    table["verdict"] = [module_verdict(row, ln_bf_threshold) for row in records]
    return table.reset_index(drop=True)


def call_counts(rows: pd.DataFrame) -> tuple[pd.Series, int, int]:
    """Significant modules (mask), how many beat the control, and how many of those are backed."""
    called = rows["is_significant"].astype(bool)
    passing = called & rows["control_pass"].astype(bool)
    return called, int(passing.sum()), int((passing & rows["calls_agree"].astype(bool)).sum())


def _comparison_summary(name: str, rows: pd.DataFrame, stability: pd.DataFrame) -> str:
    """Counts of backed calls, the top-k overlap over replicates, and the calls VEGA misses."""
    called, passing, backed = call_counts(rows)
    text = (
        f"{name}: {int(called.sum())} of {len(rows)} modules significant; {passing} beat their "
        f"size-matched random modules; {backed} of these also have every baseline's call."
    )
    for row in stability[stability["comparison"] == name].itertuples():
        text += (
            f" Top-{row.k} overlap over {row.n_replicates} "
            f"{_REPLICATE_KINDS.get(row.kind, row.kind)}: {row.top_k_overlap:.2f}."
        )
    return text + _missed_calls(rows[~called])


def _missed_calls(uncalled: pd.DataFrame) -> str:
    """Modules every baseline that ran calls but VEGA does not (strongest module score first)."""
    ran = [column for column in _BASELINES if uncalled[column].notna().any()]
    if not ran:
        return ""
    missed = uncalled[(uncalled[ran].abs() > 0).all(axis=1)]
    if missed.empty:
        return ""
    strongest = missed.reindex(
        missed["module_score_ln_bf"].abs().sort_values(ascending=False).index
    )
    names = ", ".join(strongest["module"].astype(str).head(3)) + ("…" if len(missed) > 3 else "")
    who = " and ".join(_NAMED[column] for column in ran)
    return f" Called by {who} but not by VEGA: {len(missed)} module(s) ({names})."


def heldout_summary(heldout: pd.DataFrame) -> str:
    """Held-out reconstruction of the real mask against the random masks (lower is better)."""
    real = heldout.loc[heldout["kind"] == "real", "validation_reconstruction"]
    random = heldout.loc[heldout["kind"] == "random_mask", "validation_reconstruction"]
    if real.empty or random.empty:
        return "Held-out reconstruction: no random-mask models (or no validation cells)."
    better = int((random > real.iloc[0]).sum())
    spread = f" ± {random.std(ddof=1):.4f}" if len(random) > 1 else ""
    return (
        f"Held-out reconstruction (mean per-gene loss on the validation cells, lower is "
        f"better): real mask {real.iloc[0]:.4f}, random masks {random.mean():.4f}{spread}; the "
        f"real mask reconstructs better than {better} of {len(random)} random masks."
    )


def evidence_report(
    evidence: pd.DataFrame,
    stability: pd.DataFrame,
    heldout: pd.DataFrame,
    *,
    n_top: int = 10,
    ln_bf_threshold: float = 3.0,
) -> tuple[str, list[TableBlock]]:
    """Summary paragraphs and one top-module evidence table per comparison."""
    paragraphs, blocks = [], []
    for name, rows in evidence.groupby("comparison", sort=False):
        paragraphs.append(_comparison_summary(str(name), rows, stability))
        blocks.append(
            TableBlock(
                f"Evidence for the top significant modules, {name}",
                top_evidence(rows, n_top, ln_bf_threshold),
                "module score ln BF: the same Bayes factor on the module's mean "
                "log-expression; GSEA: pre-rank on the same contrast (– where it did not run); "
                "control p: empirical p of |ln BF| among size-matched modules of models "
                "trained on shuffled masks. Verdict: backed = beats the control and every "
                "baseline agrees.",
                max_rows=None,
            )
        )
    paragraphs.append(heldout_summary(heldout))
    return "\n\n".join(paragraphs), blocks


def evidence_headline(evidence: pd.DataFrame) -> list[str]:
    """One console line per comparison: how many significant calls the evidence backs."""
    lines = []
    for name, rows in evidence.groupby("comparison", sort=False):
        called, _, backed = call_counts(rows)
        lines.append(
            f"Evidence, {name}: {backed} of {int(called.sum())} significant modules beat the "
            "random-mask control and agree with every baseline"
        )
    return lines
