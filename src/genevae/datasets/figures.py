"""Figure datasets that can be read back and previewed, also when they are folders of figures.

kedro-datasets' ``MatplotlibDataset`` is save-only and previews single files only. Reports
need the PNGs a pipeline drew, and kedro-viz should show a folder of figures (volcanoes,
UMAPs) as something: :class:`FigureDataset` loads PNG bytes and previews a folder as a
contact sheet of its figures.
"""

from __future__ import annotations

import base64
import io
from pathlib import PurePosixPath

from kedro.io.core import get_filepath_str
from kedro_datasets._typing import ImagePreview
from kedro_datasets.matplotlib import MatplotlibDataset

from genevae.errors import GenevaeInputError
from genevae.plotting.labels import natural_key

THUMBNAIL_WIDTH = 360
SHEET_COLUMNS = 3


class FigureDataset(MatplotlibDataset):
    """``MatplotlibDataset`` that loads what it saved: PNG bytes, or ``{file name: bytes}``
    for a folder (a dict of figures), in natural file-name order."""

    def load(self) -> bytes | dict[str, bytes]:  # type: ignore[override]
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._fs.isdir(path):
            with self._fs.open(path, mode="rb") as file:
                return file.read()
        files = sorted(self._fs.ls(path, detail=False), key=lambda f: natural_key(_name(f)))
        figures = {}
        for file_path in files:
            with self._fs.open(file_path, mode="rb") as file:
                figures[_name(file_path)] = file.read()
        return figures

    def preview(self) -> ImagePreview:
        """The figure itself, or for a folder a contact sheet of all its figures."""
        figures = self.load()
        png = figures if isinstance(figures, bytes) else contact_sheet(figures)
        return ImagePreview(base64.b64encode(png).decode("ascii"))


def _name(path: str) -> str:
    return PurePosixPath(path).name


def contact_sheet(figures: dict[str, bytes], columns: int = SHEET_COLUMNS) -> bytes:
    """One PNG with every figure as a captioned thumbnail, ``columns`` per row."""
    from PIL import Image, ImageDraw

    thumbs = []
    for name, png in figures.items():
        image = Image.open(io.BytesIO(png)).convert("RGB")
        image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH))
        thumbs.append((name, image))
    if not thumbs:
        raise GenevaeInputError("contact_sheet needs at least one figure.")
    caption = 16
    cell_h = max(image.height for _, image in thumbs) + caption
    n_rows = -(-len(thumbs) // columns)
    n_cols = min(columns, len(thumbs))
    sheet = Image.new("RGB", (n_cols * THUMBNAIL_WIDTH, n_rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, image) in enumerate(thumbs):
        x, y = (i % columns) * THUMBNAIL_WIDTH, (i // columns) * cell_h
        draw.text((x + 4, y + 2), name, fill="black")
        sheet.paste(image, (x, y + caption))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
