"""The VEGA report opens in headless Chromium: headline, figures and tables, nothing remote.

Screenshot: tests/e2e/artifacts/vega_report.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.browser import browse
from tests.project import latest_version


@pytest.mark.browser
def test_vega_report_renders_in_chromium(
    vega_project: Path, chromium: str, artifacts_dir: Path
) -> None:
    report = latest_version(vega_project / "data" / "08_reporting" / "kang" / "vega_report.html")
    screenshot = artifacts_dir / "vega_report.png"
    dom = browse(chromium, report.as_uri(), screenshot=screenshot, window=(1300, 2400))

    assert "<h1>VEGA: differential module activity</h1>" in dom
    assert "Top modules by |ln BF|, condition:stimulated_vs_control:" in dom
    assert dom.count('src="data:image/png;base64,') >= 4  # volcanoes, GSEA, UMAPs, training
    for section in ("Differential modules", "Agreement with GSEA", "Module activities", "Training"):
        assert f">{section}</h2>" in dom
    image = Image.open(screenshot).convert("L")
    assert image.size == (1300, 2400)
    assert image.getextrema()[0] < 100  # text and figures drawn, not a blank page
