"""``industriverse plant --site S --constraint_json F [--mismatch 0.2] [--fault NAME@HOUR] [--speedup X] --mqtt URL``.

An emulated site on MQTT: the constraint's plant with its thermal parameters perturbed by up
to ``--mismatch`` (so the model we plan with is wrong, as on a real site), process noise and
the constraint's forecast error on the disturbances, in plant time running ``--speedup``
times faster than the wall clock.  Every control step it publishes a reading on
``industriverse/<site>/telemetry``; it applies the latest set-points from
``industriverse/<site>/setpoints`` while they are valid (``time ≤ now < valid_until``) and
runs its own baseline controller otherwise (stale, absent, malformed, or ``mode: baseline``),
as a building's BMS does.  ``industriverse/<site>/status`` says ``online``/``offline``
(retained; ``offline`` is the last will).  Runs ``--hours`` of plant time (default: the
constraint's horizon), then says ``offline`` and exits 0.  SIGTERM/SIGINT end it the same way.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/plant.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import MAX_SEED, live_parser, number, one_line_errors
from industriverse.errors import BadInput


def _own_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--constraint_json", required=True, metavar="FILE", help="the client constraint the site runs under")
    p.add_argument("--domain", default=None, help="domain (default: the constraint's 'domain' field)")
    p.add_argument("--mismatch", type=number(0, 0.9), default=0.2, metavar="F",
                   help="thermal capacities and conductances each scaled by a factor in 1 ± F (default 0.2; 0 = the planning model)")
    p.add_argument("--fault", action="append", default=[], metavar="NAME@HOUR[:ARG]",
                   help="inject a fault (door_open, sensor_stuck, heater_failure) HOUR hours after the start; repeatable")
    p.add_argument("--speedup", type=number(0, 1e6, lo_open=True), default=60.0, metavar="X", help="plant seconds per wall-clock second (default 60)")
    p.add_argument("--hours", type=number(0, 24 * 366, lo_open=True), default=None, help="plant hours to run (default: the constraint's horizon)")
    p.add_argument("--start", default=None, metavar="ISO", help="plant clock at the start (default: the constraint's horizon start)")
    p.add_argument("--seed", type=number(0, MAX_SEED, integer=True), default=0, help="seed of the mismatch, the noise and the forecast error (default 0)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    return live_parser(prog, __doc__, _own_flags)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    import numpy as np
    from pydantic import ValidationError

    from industriverse.model.constraint import read_constraint_file
    from industriverse.model.mapping import map_constraint
    from industriverse.operate.plant import EmulatedPlant, mismatched_constraint, with_horizon
    from industriverse.operate.twin import parse_fault
    from messages.live import Setpoints, Status, Telemetry, topic
    from workers.logging import configure_logging, get_logger
    from workers.mqtt import connect, options_from_args, publish_json

    site = args.site
    options = options_from_args(args)
    path = Path(args.constraint_json)
    raw = read_constraint_file(path)
    domain = args.domain or raw.get("domain")
    if not domain:
        raise BadInput(str(path), "domain", "is missing: give --domain")
    if args.start is not None:
        try:
            datetime.fromisoformat(args.start)
        except ValueError:
            raise BadInput(None, "--start", f"'{args.start}' is not an ISO time") from None
    raw = with_horizon(raw, start=args.start, hours=args.hours)
    map_constraint(domain, raw, file=str(path), base_dir=path.parent)  # bad input ends here, exit 2
    true_raw, factors = mismatched_constraint(domain, raw, args.mismatch, args.seed, file=str(path), base_dir=path.parent)
    problem = map_constraint(domain, true_raw, file=str(path), base_dir=path.parent)
    plant = EmulatedPlant(problem, faults=[parse_fault(f) for f in args.fault], seed=args.seed)

    configure_logging(args.log_level)
    log = get_logger("industriverse.plant").bind(site=site)
    latest: dict[str, Setpoints | None] = {"sp": None}
    lock = threading.Lock()

    def on_message(client, userdata, msg):
        try:
            sp = Setpoints.model_validate_json(msg.payload)
        except ValidationError as exc:
            log.warning("malformed set-points ignored", error=str(exc.errors()[0]["msg"]), topic=msg.topic)
            return
        if sp.site != site:
            log.warning("set-points for another site ignored", to_site=sp.site)
            return
        if sp.mode == "capsule" and set(sp.actuators) != set(problem.actuators):
            log.warning("set-points ignored: actuators do not match", got=sorted(sp.actuators), expected=problem.actuators)
            return
        with lock:
            if latest["sp"] is None or sp.time >= latest["sp"].time:
                latest["sp"] = sp

    status_topic = topic(site, "status")
    offline = Status(site=site, role="plant", state="offline").model_dump_json().encode()
    client = connect(options, client_id=f"industriverse-plant-{site}", will=(status_topic, offline),
                     on_message=on_message, subscriptions=[(topic(site, "setpoints"), 1)], log=log)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    publish_json(client, status_topic, Status(site=site, role="plant", state="online",
                                              detail=f"{domain}, speed-up {args.speedup:g}"), qos=1, retain=True)
    log.info("plant started", domain=domain, start=problem.start.isoformat(), hours=problem.H * problem.dt_h,
             control_minutes=plant.h / 60.0, speedup=args.speedup, mismatch=args.mismatch,
             factors={k: round(v, 4) for k, v in factors.items()}, faults=args.fault)
    tele_topic = topic(site, "telemetry")
    wall0 = time.monotonic()
    mode = None
    while not plant.done and not stop.is_set():
        due = wall0 + plant.j * plant.h / args.speedup
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        now = plant.time_at(plant.j)
        with lock:
            sp = latest["sp"]
        u, why = None, "no set-points yet"
        if sp is not None:
            if sp.mode == "baseline":
                why = f"told to run the baseline: {sp.reason or 'no reason given'}"
            elif not sp.time.replace(tzinfo=None) <= now < sp.valid_until.replace(tzinfo=None):
                why = f"set-points stale (valid until {sp.valid_until.isoformat()})"
            else:
                u = np.array([sp.actuators[a] for a in problem.actuators])
                why = None
        new_mode = "setpoints" if u is not None else "baseline"
        if new_mode != mode:
            if u is None:
                log.warning("falling back to the baseline controller", time=now.isoformat(), reason=why)
            else:
                log.info("following set-points", time=now.isoformat(), capsule_version=sp.capsule_version)
            mode = new_mode
        reading = plant.step(u)
        msg = Telemetry(site=site, setpoint_version=sp.capsule_version if u is not None else None, **reading)
        publish_json(client, tele_topic, msg, qos=0)
        if reading["faults"] and len(reading["faults"]) != len(getattr(plant, "_logged_faults", [])):
            log.warning("fault active", faults=reading["faults"], time=msg.time.isoformat())
            plant._logged_faults = list(reading["faults"])
    publish_json(client, status_topic, Status(site=site, role="plant", state="offline",
                                              detail="stopped" if stop.is_set() else "run complete"),
                 qos=1, retain=True, wait=5.0)
    client.disconnect()
    client.loop_stop()
    log.info("plant stopped", steps=plant.j, time=plant.time_at(plant.j).isoformat())
    return 0


if __name__ == "__main__":
    sys.exit(main())
