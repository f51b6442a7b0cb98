"""Write examples/building/telemetry.csv: 19 days of 5-minute BMS telemetry of a known building.

The building (the "truth" the walk-through's fit should recover) is a zone and an unmeasured
heavy wall::

    zone  C = 2.0e6 J/K      wall  C = 8.0e6 J/K
    zone–ambient 60 W/K, zone–wall 250 W/K, wall–ambient 90 W/K
    solar gain on the zone: 4 m² effective aperture × global horizontal irradiance
    process noise 0.3 K/√h (zone), 0.1 K/√h (wall); room sensor noise 0.1 K

Weather is site.epw (January of the Greensboro NC TMY3); the heater (0–15 kW thermal) runs a
day/night schedule with a random level every half hour (1–4.5 kW by day, half at night).  Times are ISO 8601 in US Eastern
standard time (-05:00), from 2026-01-01 00:00 to 2026-01-20 00:00, with a two-hour logger
outage on 9 January.  Re-create with ``python examples/building/make_telemetry.py``.
"""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from industriverse.model.identify import simulate_telemetry  # noqa: E402
from industriverse.model.network import Network  # noqa: E402
from industriverse.model.series import EpwSeries, sample  # noqa: E402
from industriverse.model.telemetry import write_telemetry  # noqa: E402

TRUTH = {
    "name": "example_building",
    "nodes": [{"name": "zone", "capacity_j_per_k": 2.0e6}, {"name": "wall", "capacity_j_per_k": 8.0e6}],
    "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
    "conductances": [{"between": ["zone", "ambient"], "w_per_k": 60.0}, {"between": ["zone", "wall"], "w_per_k": 250.0},
                     {"between": ["wall", "ambient"], "w_per_k": 90.0}],
    "gains": [{"node": "zone", "disturbance": "solar", "scale": 4.0}],
    "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "min_kw": 0.0, "max_kw": 15.0, "efficiency": 0.98}],
}


def main() -> None:
    net = Network.model_validate(TRUTH)
    start = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    t = np.arange(0, 19 * 86400 + 1, 300.0)
    outage = (t > 8 * 86400 + 10 * 3600) & (t < 8 * 86400 + 12 * 3600)
    t = t[~outage]
    hours = t / 3600.0
    amb = sample(EpwSeries(type="epw", path="site.epw", field="temp_air"), start, hours, 1 / 12, field="ambient",
                 base_dir=HERE)
    sol = sample(EpwSeries(type="epw", path="site.epw", field="ghi", scale=0.001), start, hours, 1 / 12,
                 field="solar", base_dir=HERE)
    rng = np.random.default_rng(2026)
    level = rng.uniform(1.0, 4.5, int(t[-1] // 1800) + 2)
    day = ((hours % 24) >= 6) & ((hours % 24) < 20)
    heater = np.round(level[(t // 1800).astype(int)] * np.where(day, 1.0, 0.5), 2)
    cols = {"heater": heater, "ambient": amb, "solar": sol}
    w = np.column_stack([cols[k] for k in net.actuator_names + net.disturbance_names])
    tel, _ = simulate_telemetry(net, t, w, x0=[19.0, 14.0], process_noise=[0.3, 0.1], measurement_noise=0.1,
                                measured=["zone"], seed=7)
    write_telemetry(HERE / "telemetry.csv", net, tel, start=start)
    print(f"wrote {HERE / 'telemetry.csv'} ({len(t)} rows)")


if __name__ == "__main__":
    main()
