"""Write examples/building/site.epw: January and 1–14 March of a typical meteorological year, in EPW layout.

Source: NREL TMY3 for Greensboro Piedmont Triad International Airport, NC (USAF 723170),
the file ``723170TYA.CSV`` that pvlib ships as sample data (``pvlib/data``). TMY3 data were
produced by the U.S. National Renewable Energy Laboratory (Wilcox & Marion, "Users Manual for
TMY3 Data Sets", NREL/TP-581-43156, 2008) for the U.S. Department of Energy. Typical years mix
months of different years (here January is from the year given in each row).

Only January (744 hours) and 1–14 March (336 hours: US daylight saving time starts on the
second Sunday of March, 8 March in 2026, so a horizon over that 23-hour day is covered) are
written, to keep the file small; fields that TMY3 lacks carry the EPW "missing" codes.
Re-create with ``python examples/building/make_site_epw.py``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pvlib

SRC = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
OUT = Path(__file__).with_name("site.epw")


def main() -> None:
    data, meta = pvlib.iotools.read_tmy3(SRC, map_variables=True)
    start = data.index - pd.Timedelta(hours=1)  # TMY3 stamps an hour at its end
    jan = data[(start.month == 1) | ((start.month == 3) & (start.day <= 14))]
    name = meta["Name"].strip('"').title()
    header = [
        f"LOCATION,{name},{meta['State']},USA,TMY3 (NREL),{meta['USAF']},"
        f"{meta['latitude']:.3f},{meta['longitude']:.3f},{meta['TZ']:.1f},{meta['altitude']:.1f}",
        "DESIGN CONDITIONS,0",
        "TYPICAL/EXTREME PERIODS,0",
        "GROUND TEMPERATURES,0",
        "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
        "COMMENTS 1,January and 1-14 March of NREL TMY3 723170 (Greensboro NC) as shipped with pvlib (pvlib/data/723170TYA.CSV); "
        "converted by examples/building/make_site_epw.py",
        "COMMENTS 2,Only January and 1-14 March: fields missing in TMY3 carry EPW missing codes",
        "DATA PERIODS,2,1,January,Sunday,1/1,1/31,March,Sunday,3/1,3/14",
    ]
    rows = []
    for ts, r in jan.iterrows():
        s = ts - pd.Timedelta(hours=1)  # the hour's start, local standard time; EPW hour 1 = 00:00-01:00
        year, month, day, hour = s.year, s.month, s.day, s.hour + 1
        rows.append(",".join(str(v) for v in [
            year, month, day, hour, 60, "?9?9?9?9E0?9?9?9?9?9?9?9?9?9?9?9?9?9?9?9*9*9?9?9?9",
            f"{r['temp_air']:.1f}", f"{r['temp_dew']:.1f}", f"{r['relative_humidity']:.0f}", f"{r['pressure'] * 100:.0f}",
            f"{r['ghi_extra']:.0f}", f"{r['dni_extra']:.0f}", 9999, f"{r['ghi']:.0f}", f"{r['dni']:.0f}", f"{r['dhi']:.0f}",
            999999, 999999, 999999, 9999, f"{r['wind_direction']:.0f}", f"{r['wind_speed']:.1f}", 99, 99, 9999, 99999,
            9, 999999999, 999, 0.999, 999, 99, f"{r['albedo']:.2f}" if r['albedo'] == r['albedo'] else 999, 999, 99]))
    OUT.write_text("\n".join(header + rows) + "\n")
    print(f"wrote {OUT} ({len(rows)} hours)")


if __name__ == "__main__":
    main()
