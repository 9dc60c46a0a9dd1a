"""How a configured comparison (``{name?, groupby, group1, group2?, cell_types?}``) is named.

Shared by the vega pipeline (table and figure names) and the configuration checks (a GSEA
contrast must name one of the comparisons), so both always agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def comparison_name(comparison: Mapping[str, Any]) -> str:
    """``name`` if given, else e.g. ``condition:stimulated_vs_control`` (or ``…_vs_rest``)."""
    if comparison.get("name"):
        return str(comparison["name"])
    group2 = comparison.get("group2")
    return (
        f"{comparison['groupby']}:{comparison['group1']}_vs_{'rest' if group2 is None else group2}"
    )


def labels_as_text(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison with its labels as strings, as obs labels are compared.

    YAML reads ``group1: 1`` as a number; the obs label it means is the text ``"1"``.
    """
    result = dict(comparison)
    for key in ("group1", "group2"):
        if result.get(key) is not None:
            result[key] = str(result[key])
    if result.get("cell_types"):
        result["cell_types"] = [str(label) for label in result["cell_types"]]
    return result
