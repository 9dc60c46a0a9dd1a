"""Configured comparisons (``{name?, groupby, group1, group2?, cell_types?}``): their labels
and names.

Shared by the vega pipeline (table and figure names), the Bayes factors and GSEA (which cells
a label selects) and the configuration checks (a GSEA contrast must name one of the
comparisons), so all of them agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_label(group: object) -> str | None:
    """``"1"`` for a configured ``1`` (YAML reads it as a number), None stays None: labels
    compare as text, as obs labels do."""
    return None if group is None else str(group)


def comparison_name(comparison: Mapping[str, Any]) -> str:
    """``name`` if given, else e.g. ``condition:stimulated_vs_control`` (or ``…_vs_rest``)."""
    if comparison.get("name"):
        return str(comparison["name"])
    group2 = as_label(comparison.get("group2")) or "rest"  # a label 0 is a group, not the rest
    return f"{comparison['groupby']}:{comparison['group1']}_vs_{group2}"
