"""Group labels from configuration compare as text, as obs labels do."""

from __future__ import annotations


def as_label(group: object) -> str | None:
    """``"1"`` for a configured ``1`` (YAML reads it as a number), None stays None."""
    return None if group is None else str(group)
