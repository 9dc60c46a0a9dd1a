"""Figure datasets load what they saved and preview folders as a contact sheet."""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure
from PIL import Image

from genevae.datasets.figures import FigureDataset
from genevae.datasets.report import HTMLReportDataset


def _figure(text: str) -> Figure:
    figure = Figure(figsize=(3, 2))
    figure.subplots().set_title(text)
    return figure


def test_a_folder_of_figures_loads_in_natural_order_and_previews_as_one_sheet(tmp_path):
    dataset = FigureDataset(filepath=str(tmp_path / "maps"), save_args={"format": "png"})
    dataset.save({f"umap_{i}.png": _figure(str(i)) for i in (10, 2, 1)})

    figures = dataset.load()
    assert list(figures) == ["umap_1.png", "umap_2.png", "umap_10.png"]
    assert all(png.startswith(b"\x89PNG") for png in figures.values())

    sheet = Image.open(io.BytesIO(base64.b64decode(dataset.preview())))
    assert sheet.size == (3 * 360, sheet.size[1])  # three thumbnails side by side
    assert sheet.size[1] > 100


def test_a_single_figure_loads_as_png_bytes(tmp_path):
    dataset = FigureDataset(filepath=str(tmp_path / "curve.png"))
    dataset.save(_figure("curve"))
    assert dataset.load().startswith(b"\x89PNG")
    assert base64.b64decode(dataset.preview()) == dataset.load()


def test_report_preview_is_its_headline_section(tmp_path):
    dataset = HTMLReportDataset(filepath=str(tmp_path / "report.html"))
    dataset.save(
        '<html><title>T</title><section id="headline"><ul><li>IFN +27.6</li></ul></section>'
        "<img src='data:image/png;base64,AAAA'></html>"
    )
    assert dataset.preview() == "<ul><li>IFN +27.6</li></ul>"
    dataset.save("<html><title>Only a title</title></html>")
    assert dataset.preview() == "<h2>Only a title</h2>"
