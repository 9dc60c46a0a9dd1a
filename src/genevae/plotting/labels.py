"""Label helpers shared by figures: natural sort order (0, 1, 2, 10 rather than 0, 1, 10, 2)."""

from __future__ import annotations

import re
from collections.abc import Iterable


def natural_key(label: object) -> tuple:
    """Sort key that compares digit runs as numbers: ``cluster 2`` before ``cluster 10``."""
    parts = re.split(r"(\d+)", str(label))
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in parts)


def natural_sorted(labels: Iterable[object]) -> list[str]:
    """Distinct labels as strings, in natural order."""
    return sorted({str(label) for label in labels}, key=natural_key)
