"""EPW weather as a disturbance: typical-year mapping onto the horizon's dates."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pvlib
import pytest
from strike_helpers import one_zone_heater

from industriverse.errors import BadInput
from industriverse.model.mapping import map_constraint
from industriverse.model.series import EpwSeries, sample

EPW = Path(__file__).resolve().parents[1] / "examples" / "building" / "site.epw"
TMY3 = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"


@pytest.fixture(autouse=True)
def _examples_are_a_data_root(monkeypatch):
    """The shipped EPW file is named by absolute path here: its directory is a data root."""
    monkeypatch.setenv("INDUSTRIVERSE_DATA_ROOTS", str(EPW.parent))


def _tmy3(field: str, month: int, day: int, hour: int) -> float:
    """The value of the source TMY3 file for the hour that starts at month/day hour (TMY3 stamps hour ends)."""
    data, _ = pvlib.iotools.read_tmy3(TMY3, map_variables=True)
    start = data.index - np.timedelta64(1, "h")
    sel = (start.month == month) & (start.day == day) & (start.hour == hour)
    return float(data[field][sel].iloc[0])


def test_epw_maps_month_day_hour_onto_the_horizon():
    spec = EpwSeries(type="epw", path=str(EPW), field="temp_air")
    start = datetime(2026, 1, 13, 0, 0)  # the file is 1988: only month/day/hour matter
    v = sample(spec, start, np.arange(0, 24, 1.0), 1.0, field="disturbances.ambient")
    for h in (0, 7, 13, 23):
        assert v[h] == pytest.approx(_tmy3("temp_air", 1, 13, h))
    # 15-minute steps: temperature interpolated between hours, irradiance held
    q = sample(spec, start, np.array([7.25]), 0.25, field="f")[0]
    assert q == pytest.approx(0.75 * _tmy3("temp_air", 1, 13, 7) + 0.25 * _tmy3("temp_air", 1, 13, 8))
    ghi = sample(EpwSeries(type="epw", path=str(EPW), field="ghi", scale=0.001), start, np.array([12.0, 12.75]), 0.25, field="f")
    assert ghi[0] == ghi[1] == pytest.approx(_tmy3("ghi", 1, 13, 12) / 1000)


def test_an_aware_horizon_reads_the_files_standard_time():
    spec = EpwSeries(type="epw", path=str(EPW), field="temp_air")
    utc = datetime(2026, 1, 13, 17, 0, tzinfo=timezone.utc)  # 12:00 EST (UTC-5, the file's zone)
    assert sample(spec, utc, np.array([0.0]), 1.0, field="f")[0] == pytest.approx(_tmy3("temp_air", 1, 13, 12))


def test_dates_the_file_lacks_are_refused():
    spec = EpwSeries(type="epw", path=str(EPW), field="temp_air")
    with pytest.raises(BadInput, match="disturbances.ambient.*no record for 01 February 00:00"):
        sample(spec, datetime(2026, 1, 31, 12), np.arange(0, 24, 1.0), 1.0, field="disturbances.ambient")
    with pytest.raises(BadInput, match="no such EPW file"):
        sample(EpwSeries(type="epw", path="nope.epw", field="ghi"), datetime(2026, 1, 1), np.zeros(1), 1.0, field="d")


def test_constraint_with_epw_ambient_and_solar_gain():
    raw = {
        "horizon": {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15},
        "network": {
            "nodes": [{"name": "zone", "capacity_j_per_k": 1e6}],
            "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
            "conductances": [{"between": ["zone", "ambient"], "w_per_k": 100.0}],
            "gains": [{"node": "zone", "disturbance": "solar", "scale": 5.0}],  # 5 m² effective aperture
            "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}],
        },
        "initial_state": {"zone": 21.0},
        "envelope": {"zone": {"min": 20.0, "max": 24.0}},
        "disturbances": {"ambient": {"type": "epw", "path": "site.epw", "field": "temp_air"},
                         "solar": {"type": "epw", "path": "site.epw", "field": "ghi", "scale": 0.001}},
    }
    p = map_constraint("hvac", raw, file="c.json", base_dir=EPW.parent)
    amb = p.d[:, p.network.disturbance_names.index("ambient")]
    sol = p.d[:, p.network.disturbance_names.index("solar")]
    assert amb[0] == pytest.approx(_tmy3("temp_air", 1, 13, 0))
    assert sol.max() > 0.1 and sol[:24].max() == 0.0  # night until 6 am: no sun
    bad = {**raw, "disturbances": {**raw["disturbances"], "ambient": {"type": "epw", "path": "site.epw", "field": "sunshine"}}}
    with pytest.raises(BadInput, match="disturbances.ambient"):
        map_constraint("hvac", bad, file="c.json", base_dir=EPW.parent)


def test_pv_output_of_a_declared_array():
    from industriverse.model.series import PvSeries

    start, hours = datetime(2026, 1, 13), np.arange(0, 24 * 7, 1.0)
    pv = sample(PvSeries(type="pv", path=str(EPW), kw_peak=5.0, tilt=30, azimuth=180), start, hours, 1.0, field="pv")
    ghi = sample(EpwSeries(type="epw", path=str(EPW), field="ghi"), start, hours, 1.0, field="ghi")
    assert np.all(pv[ghi == 0] == 0) and pv.max() <= 5.0 and pv.max() > 1.0
    # a south-facing 30° array in a January week: more than the horizontal irradiance × rating × losses, not absurdly
    horizontal = 5.0 * ghi.sum() / 1000 * 0.86 * 0.96
    assert 1.0 < pv.sum() / horizontal < 2.5
    north = sample(PvSeries(type="pv", path=str(EPW), kw_peak=5.0, tilt=30, azimuth=0), start, hours, 1.0, field="pv")
    assert north.sum() < 0.7 * pv.sum()


def test_a_dst_day_reads_the_file_in_standard_time():
    """8 March 2026 in New York has 23 hours (clocks jump 02:00 → 03:00 EDT); the shipped file covers
    1–14 March.  Every hourly step is one hour of real time after 00:00 EST, so step k reads the
    file's standard-time hour k."""
    raw = {
        "horizon": {"start": "2026-03-08T00:00", "hours": "day", "step_minutes": 60, "timezone": "America/New_York"},
        **one_zone_heater(),
        "disturbances": {"ambient": {"type": "epw", "path": "site.epw", "field": "temp_air"}},
    }
    p = map_constraint("hvac", raw, file="c.json", base_dir=EPW.parent)
    assert p.H == 23
    amb = p.d[:, 0]
    for k in (0, 1, 2, 12, 22):
        assert amb[k] == pytest.approx(_tmy3("temp_air", 3, 8, k)), k
