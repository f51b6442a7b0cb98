"""The Agg canvas of the report's plots: each text's glyphs rendered once, then replayed.

matplotlib's Agg renderer lays every text out (HarfBuzz shaping) and renders each glyph with
FreeType on every draw, then blends the glyph bitmaps onto the canvas: a third of a warm plot's
drawing, for texts that are mostly the same from one report to the next (titles, axis labels,
legends, time-axis ticks at the same places).  :class:`TextCachingRenderer` records the glyph
bitmaps a text drew (the image and the integer position of each ``draw_text_image`` call) under
everything that decides them: the string, the font properties and the font file they resolve to,
the exact position and angle, the canvas size and dpi, antialiasing, hinting and kerning settings.  The same text
drawn again replays those calls, blended with the current colour and clip as before: the pixels
are the same as matplotlib's own drawing, by construction (tests/test_report.py compares).

The cache is per thread (a worker may draw reports in several threads) and bounded
(:data:`TEXTS` texts, least recently used dropped).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import matplotlib as mpl
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag

TEXTS = 4096  # texts kept per thread: a report draws ~130, with their glyph bitmaps ~1 kB each

_local = threading.local()


def _texts() -> OrderedDict:
    texts = getattr(_local, "texts", None)
    if texts is None:
        texts = _local.texts = OrderedDict()
    return texts


def clear_cache() -> None:
    """Forget this thread's recorded texts."""
    _local.texts = OrderedDict()


class _Recorder:
    """Stands in for the C++ renderer while a text draws: passes each glyph bitmap on and keeps a copy."""

    def __init__(self, target):
        self.target = target
        self.calls: list[tuple] = []

    def draw_text_image(self, image, x, y, angle, gc):
        self.calls.append((np.array(image, copy=True), x, y, angle))
        self.target.draw_text_image(image, x, y, angle, gc)

    def __getattr__(self, name):  # anything else a text might call (boxes of mathtext are not cached)
        return getattr(self.target, name)


def _font_key(prop) -> tuple:
    """What decides the font and size a text is set in: the properties and the files they resolve to now."""
    families = tuple(prop.get_family())
    generic = tuple(tuple(mpl.rcParams[f"font.{f}"]) for f in families if f"font.{f}" in mpl.rcParams)
    return (families, generic, prop.get_style(), prop.get_variant(), prop.get_weight(), prop.get_stretch(),
            prop.get_size_in_points(), prop.get_file(), prop.get_math_fontfamily(), font_manager.findfont(prop),
            mpl.rcParams["text.hinting_factor"], mpl.rcParams["text.kerning_factor"])  # both shift glyphs


class TextCachingRenderer(RendererAgg):
    """:class:`RendererAgg` whose plain (non-math) texts are rendered once per key and replayed (module docstring)."""

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath:
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        features = None
        if mtext is not None:  # OpenType features and language (matplotlib >= 3.10; older ones set neither)
            features = (tuple(getattr(mtext, "get_fontfeatures", lambda: None)() or ()),
                        getattr(mtext, "get_language", lambda: None)())
        key = (s, _font_key(prop), float(x), float(y), float(angle), self.width, self.height, self.dpi,
               bool(gc.get_antialiased()), get_hinting_flag(), features)
        texts = _texts()
        calls = texts.get(key)
        if calls is not None:
            texts.move_to_end(key)
            for image, ix, iy, a in calls:
                self._renderer.draw_text_image(image, ix, iy, a, gc)
            return None
        real, recorder = self._renderer, _Recorder(self._renderer)
        self._renderer = recorder
        try:
            super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        finally:
            self._renderer = real
        texts[key] = recorder.calls
        if len(texts) > TEXTS:
            texts.popitem(last=False)
        return None


class Canvas(FigureCanvasAgg):
    """:class:`FigureCanvasAgg` drawing with a :class:`TextCachingRenderer`."""

    def get_renderer(self):
        renderer = super().get_renderer()
        if not isinstance(renderer, TextCachingRenderer):  # made anew (first draw, or the size changed)
            renderer = self.renderer = TextCachingRenderer(renderer.width, renderer.height, renderer.dpi)
        return renderer
