"""The PDF's typeface: DejaVu Sans, and the same faces cut down to the characters reports print.

DejaVu Sans (shipped with matplotlib) covers °C, CO₂, ≤ and Clopper–Pearson as written.  fpdf
subsets every embedded face at output with fontTools: ~0.04-0.05 s for each full face (6,000
glyphs, OpenType layout tables that fpdf then drops), a few ms for a face of a few hundred glyphs.

:func:`reduced_font_files` cuts the faces once per user and font version (Latin-1, general
punctuation, sub- and superscript digits, the math signs the report prints; the OpenType layout
tables fpdf drops anyway left out) into the temporary directory, where every process finds them.
A report with any character outside :data:`REDUCED_CHARS` is set in the full faces: the text is
the same either way.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

REDUCED_CHARS = frozenset(
    [chr(c) for c in range(0x20, 0x7F)] + [chr(c) for c in range(0xA0, 0x180)] + [chr(c) for c in range(0x2010, 0x2040)]
    + [chr(c) for c in range(0x2070, 0x209D)] + list("−≤≥×±≈∞→←↑↓€£¥™")
)

_REDUCED: dict[tuple, dict[str, Path] | None] = {}


def dejavu_files() -> dict[str, Path] | None:
    """DejaVu Sans regular ``""`` and bold ``"B"``: matplotlib's copies (else the system's), or None."""
    import matplotlib

    dirs = [Path(matplotlib.get_data_path()) / "fonts" / "ttf", Path("/usr/share/fonts/truetype/dejavu")]
    for d in dirs:
        files = {"": d / "DejaVuSans.ttf", "B": d / "DejaVuSans-Bold.ttf"}
        if all(p.is_file() for p in files.values()):
            return files
    return None


def _cut(src: Path, dest: Path) -> None:
    """Write ``src`` cut to :data:`REDUCED_CHARS`, without OpenType layout tables, as ``dest`` (atomically)."""
    from fontTools import subset as ftsubset
    from fontTools import ttLib

    options = ftsubset.Options(notdef_outline=True, recommended_glyphs=True, layout_features=[], name_IDs=["*"],
                               name_languages=["*"])
    options.drop_tables += ["FFTM", "GDEF", "GPOS", "GSUB", "MATH", "hdmx", "meta"]  # as fpdf does at output
    font = ttLib.TTFont(str(src), recalcTimestamp=False)
    subsetter = ftsubset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in REDUCED_CHARS])
    subsetter.subset(font)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    font.save(str(part))
    os.replace(part, dest)  # whole or absent: another process may read it meanwhile


def reduced_font_files(fonts: dict[str, Path] | None = None) -> dict[str, Path] | None:
    """The faces of ``fonts`` (default :func:`dejavu_files`) cut down (module docstring), or None.

    Written once per user into ``$TMPDIR/industriverse-fonts-<uid>``, named by a hash of the
    source files, :data:`REDUCED_CHARS` and the fontTools version; None where that cannot be done
    (then the full faces are used)."""
    fonts = fonts if fonts is not None else dejavu_files()
    if not fonts:
        return None
    key = tuple(str(fonts[k]) for k in sorted(fonts))
    if key in _REDUCED:
        return _REDUCED[key]
    out: dict[str, Path] | None = {}
    try:
        import fontTools

        stats = [(p, Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in key]
        digest = hashlib.sha256(repr((sorted(REDUCED_CHARS), fontTools.version, stats)).encode()).hexdigest()
        folder = Path(tempfile.gettempdir()) / f"industriverse-fonts-{os.getuid()}"
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid != os.getuid():  # someone else's folder: read no font from it
            raise PermissionError(str(folder))
        for style, src in fonts.items():
            dest = folder / f"{Path(src).stem}-{digest[:16]}.ttf"
            if not dest.is_file():
                _cut(Path(src), dest)
            out[style] = dest
    except (OSError, ImportError, ValueError, KeyError):
        out = None
    _REDUCED[key] = out
    return out
