"""Client networks the tests share."""
from __future__ import annotations


def roof_radiation_constraint() -> dict:
    """A zone under a roof that radiates to a -10 °C sky (the nonlinear σεA(T⁴ − T_sky⁴) term)."""
    return {
        "horizon": {"start": "2026-01-13T00:00", "hours": 6, "step_minutes": 15},
        "network": {
            "nodes": [{"name": "zone", "capacity_j_per_k": 1e6}, {"name": "roof", "capacity_j_per_k": 2e5}],
            "boundaries": [{"name": "ambient", "disturbance": "ambient"}, {"name": "sky", "disturbance": "sky"}],
            "conductances": [{"between": ["zone", "ambient"], "w_per_k": 80.0}, {"between": ["zone", "roof"], "w_per_k": 150.0}],
            "radiation": [{"node": "roof", "boundary": "sky", "emissivity": 0.9, "area_m2": 20.0}],
            "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}],
        },
        "initial_state": {"zone": 21.0, "roof": 5.0},
        "envelope": {"zone": {"min": 20.0, "max": 24.0}},
        "disturbances": {"ambient": 5.0, "sky": -10.0},
    }
