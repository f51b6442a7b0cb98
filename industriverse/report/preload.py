"""What the render processes' fork server imports once (:mod:`industriverse.report.pool`).

Importing this module is its purpose: it loads the renderers (matplotlib's Agg canvas, fpdf,
PIL) and does their once-per-process work (matplotlib's font cache and first text layout,
fpdf's parse of the DejaVu faces), so every render process forked from the server starts warm.
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure

import industriverse.report.plots  # noqa: F401 - the plot functions the pool runs
from industriverse.report.agg import Canvas
from industriverse.report import render
from industriverse.report.fonts import reduced_font_files


def _warm() -> None:
    with industriverse.report.plots.style():  # the plots' settings
        fig = Figure(figsize=(2, 1), dpi=40)
        Canvas(fig)  # the plots' canvas (industriverse.report.agg)
        ax = fig.subplots()
        ax.plot([0.0, 1.0], [0.0, 1.0])
        ax.set_title("°C –", fontsize=9)
        ax.set_xlabel("kWh")
        fig.canvas.draw()  # loads the fonts into matplotlib's font cache, builds the text layout caches
    fonts = render._font_files()
    if fonts:
        from fpdf import FPDF

        render._add_fonts(FPDF(), fonts)  # parsed once here, cloned per document
        reduced = reduced_font_files(fonts)  # the cut faces most reports are set in
        if reduced:
            render._add_fonts(FPDF(), reduced)
    from PIL import Image, PngImagePlugin  # noqa: F401 - the PNG writer and reader

    Image.new("RGB", (2, 2)).save(io.BytesIO(), format="png")


try:
    _warm()
except Exception:  # noqa: BLE001 - warming up is an optimisation; a real fault shows when drawing
    pass
