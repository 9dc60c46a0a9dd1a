"""Self-contained HTML reports: sections of text, tables and embedded figures (no kedro/mlflow)."""

from genevae.reporting.html import figure_to_base64, render_report, table_to_html
from genevae.reporting.markdown import markdown_table
from genevae.reporting.sections import FigureBlock, ReportSection, TableBlock

__all__ = [
    "FigureBlock",
    "ReportSection",
    "TableBlock",
    "figure_to_base64",
    "markdown_table",
    "render_report",
    "table_to_html",
]
