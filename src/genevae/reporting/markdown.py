"""Markdown tables for machines and READMEs (no tabulate dependency)."""

from __future__ import annotations

import pandas as pd

from genevae.reporting.html import format_number


def _cell(value: object) -> str:
    return format_number(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table; numbers with three significant digits, NaN as '–'."""
    columns = [str(column) for column in table.columns]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = [
        "| " + " | ".join(c.replace("|", "\\|") for c in columns) + " |",
        "| " + " | ".join("---:" if is_num else "---" for is_num in numeric) + " |",
    ]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
    return "\n".join(lines) + "\n"
