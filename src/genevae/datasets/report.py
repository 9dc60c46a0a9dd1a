"""A self-contained HTML report as a versioned catalog dataset that kedro-viz previews."""

from __future__ import annotations

import re

from kedro_datasets._typing import HTMLPreview
from kedro_datasets.text import TextDataset

_HEADLINE = re.compile(r'<section id="headline">(.*?)</section>', re.DOTALL)


class HTMLReportDataset(TextDataset):
    """An HTML page saved as text; kedro-viz previews its headline section.

    The whole page (figures embedded as base64) is too large for the preview panel, so the
    preview is the ``<section id="headline">`` that :func:`genevae.reporting.render_report`
    writes, or the page's title when there is none.
    """

    def preview(self) -> HTMLPreview:
        page = self.load()
        found = _HEADLINE.search(page)
        if found:
            return HTMLPreview(found.group(1))
        title = re.search(r"<title>(.*?)</title>", page, re.DOTALL)
        return HTMLPreview(f"<h2>{title.group(1) if title else 'Report'}</h2>")
