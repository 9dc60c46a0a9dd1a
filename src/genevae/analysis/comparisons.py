"""How a configured comparison (``{name?, groupby, group1, group2?, cell_types?}``) is named.

Shared by the vega pipeline (table and figure names) and the configuration checks (a GSEA
contrast must name one of the comparisons), so both always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genevae.analysis.labels import as_label


def comparison_name(comparison: Mapping[str, Any]) -> str:
    """``name`` if given, else e.g. ``condition:stimulated_vs_control`` (or ``…_vs_rest``)."""
    if comparison.get("name"):
        return str(comparison["name"])
    group2 = as_label(comparison.get("group2")) or "rest"  # a label 0 is a group, not the rest
    return f"{comparison['groupby']}:{comparison['group1']}_vs_{group2}"
