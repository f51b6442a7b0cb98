"""Pipeline benchmark (DESIGN.md §6): strike latency embedded vs RabbitMQ, throughput with 1 vs 2
worker processes, the regiment's confirmed publish rate.

    python benchmarks/pipeline.py [--broker amqp://guest:guest@127.0.0.1:5672/%2F] [--strikes 8] [--repeat 15]

Needs the RabbitMQ broker. Uses a throw-away data directory and queue prefix; deletes its queues.
Targets: a 96-step hvac strike < 3 s embedded; messaging overhead < 100 ms per strike;
2 worker processes >= 1.7x the throughput of 1; the regiment >= 500 confirmed requests/s.

Throughput is timed on warm worker processes: each run first sends two strikes per process and waits
for them (a process's first strike pays its one-time costs: the renderers' imports, the first figures),
then times ``--strikes`` strikes.  ``--throughput-only`` runs just that part; it uses no newer API, so
this file copied into an older checkout measures that code with the same method.

The messaging overhead is the difference between the same strike (same seed) run on the embedded
bus and through RabbitMQ by one worker process, measured in pairs whose order alternates (so a
drift in the machine's load cancels), over ``--repeat`` pairs: the median of the paired
differences with a 95 % bootstrap interval (and the mean with its Student-t interval).  The
target counts as met only when the whole interval is below it, as missed when the whole interval
is above it, and as undecided otherwise (run more pairs, on a quieter machine).  The work itself
(plots, PDF) varies by a few hundred ms from strike to strike, so the same comparison is also made on
each strike's wall time minus the time its workers spent handling messages (the workers' own
``industriverse_message_handling_seconds`` histogram: in-process for the embedded bus, from the
worker's ``--metrics-port`` for RabbitMQ): what remains is transport, queueing and waiting.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def strike_message(raw: dict, seed: int = 0):
    from messages import Message, StrikeRequested

    return Message.start(StrikeRequested(domain="hvac", constraint=raw, seed=seed, backoff_k=1.0))


def wait_all(ids, timeout=600.0):
    from industriverse.fleet import store

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [store.get_strike(i) for i in ids]
        if all(r and r["status"] in store.TERMINAL_STATUSES for r in rows):
            return
        time.sleep(0.05)
    raise TimeoutError("strikes did not finish")


def median_interval(diffs, confidence: float = 0.95, resamples: int = 5000, seed: int = 0) -> tuple[float, float, float]:
    """``(median, lo, hi)``: the median of ``diffs`` and its percentile-bootstrap ``confidence`` interval."""
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    meds = np.median(d[rng.integers(0, d.size, size=(resamples, d.size))], axis=1)
    lo, hi = np.percentile(meds, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(np.median(d)), float(lo), float(hi)


def handling_local() -> tuple[float, float]:
    """(sum of seconds, count) of the message-handling histogram of this process's workers."""
    from workers import metrics

    total = count = 0.0
    for fam in metrics.HANDLING_SECONDS.collect():
        for sample in fam.samples:
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total, count


def handling_remote(port: int) -> tuple[float, float]:
    """(sum of seconds, count) of the message-handling histogram a worker process serves on ``port``."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("industriverse_message_handling_seconds_sum"):
            total += float(line.split()[-1])
        elif line.startswith("industriverse_message_handling_seconds_count"):
            count += float(line.split()[-1])
    return total, count


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verdict(lo: float, hi: float, target: float) -> str:
    return "yes" if hi < target else ("NO" if lo >= target else "undecided")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", default=os.environ.get("INDUSTRIVERSE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    p.add_argument("--strikes", type=int, default=8, help="strikes per throughput run (default 8)")
    p.add_argument("--repeat", type=int, default=15, help="embedded/RabbitMQ strike pairs for the latency and overhead (default 15)")
    p.add_argument("--publish", type=int, default=2000, help="requests for the publish-rate run (default 2000)")
    p.add_argument("--throughput-only", action="store_true",
                   help="only the throughput runs (they use no newer API: this file copied into an older checkout measures it)")
    args = p.parse_args()

    home = tempfile.mkdtemp(prefix="iv-bench-")
    os.environ["INDUSTRIVERSE_HOME"] = home
    os.environ.pop("INDUSTRIVERSE_DB_URL", None)
    from industriverse.fleet import store
    from strike_helpers import delete_topology, spawn_worker, start_workers, stop_workers
    from workers.actor import load_actors
    from workers.embedded import EmbeddedBus
    from workers.rabbitmq.client import request
    from workers.rabbitmq.publisher import RabbitPublisher

    raw = json.loads((ROOT / "examples" / "hvac_testcase1.json").read_text())
    rows = []

    prefix = f"ivbench-{uuid.uuid4().hex[:8]}"
    logs = Path(home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if not args.throughput_only:
        # 1. latency of one 96-step hvac strike (warm processes: imports and keys done once), embedded and on
        # RabbitMQ, in pairs with the same seed whose order alternates
        bus = EmbeddedBus(load_actors(["all"]))
        bus.request(strike_message(raw))  # warm-up
        port = free_port()
        worker = spawn_worker([sys.executable, "-m", "cli.main", "worker", "all", "--broker", args.broker, "--prefix", prefix,
                               "--concurrency", "1", "--grace", "20", "--metrics-port", str(port)],
                              args.broker, prefix, logs / "latency-worker.log", timeout=60, cwd=ROOT,
                              env={**os.environ, "INDUSTRIVERSE_LOG_LEVEL": "INFO"})
        emb, rab = [], []
        emb_out, rab_out = [], []  # wall time minus the workers' own handling time (the histogram's sum)

        def embedded(i):
            h0, _ = handling_local()
            t = time.perf_counter()
            out = bus.request(strike_message(raw, seed=i))
            emb.append(time.perf_counter() - t)
            emb_out.append(emb[-1] - (handling_local()[0] - h0))
            assert out.type == "strike.completed", out.body

        def rabbit(i):
            h0, c0 = handling_remote(port)
            t = time.perf_counter()
            out = request(strike_message(raw, seed=i), url=args.broker, prefix=prefix, timeout=300)
            rab.append(time.perf_counter() - t)
            assert out.type == "strike.completed", out.body
            deadline = time.monotonic() + 5  # the last stage records its time just after publishing the outcome
            while True:
                h1, c1 = handling_remote(port)
                if c1 - c0 >= stages or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            rab_out.append(rab[-1] - (h1 - h0))

        c0 = handling_local()[1]
        bus.request(strike_message(raw, seed=10_000))
        stages = handling_local()[1] - c0  # messages handled per strike
        try:
            request(strike_message(raw), url=args.broker, prefix=prefix, timeout=300)  # warm-up of the worker
            for i in range(args.repeat):
                for run in ((embedded, rabbit) if i % 2 == 0 else (rabbit, embedded)):
                    run(i)
        finally:
            stop_workers(worker)
        from industriverse.verify.stats import t_interval

        diffs = [1000 * (r - e) for r, e in zip(rab, emb)]
        e, r = statistics.median(emb), statistics.median(rab)
        med, lo, hi = median_interval(diffs)
        mlo, mhi = t_interval(diffs, 0.95)
        n = len(diffs)
        rows.append((f"96-step hvac strike, embedded (s, median of {n})", f"{e:.3f}", "< 3", "yes" if e < 3 else "NO"))
        rows.append((f"same strike on RabbitMQ, 1 worker process (s, median of {n})", f"{r:.3f}", "", ""))
        rows.append((f"messaging overhead per strike (ms, median of {n} pairs)", f"{med:.0f}", "< 100", verdict(lo, hi, 100.0)))
        rows.append(("  95 % bootstrap interval of that median (ms)", f"[{lo:.0f}, {hi:.0f}]", "", ""))
        rows.append(("  mean and 95 % t interval (ms)", f"{statistics.fmean(diffs):.0f} [{mlo:.0f}, {mhi:.0f}]", "", ""))
        # the same difference without the work: each strike's wall time minus the workers' handling time, so the
        # strike-to-strike spread of the work (plots, PDF) drops out of the comparison
        tdiffs = [1000 * (r - e) for r, e in zip(rab_out, emb_out)]
        med, lo, hi = median_interval(tdiffs)
        rows.append((f"messaging overhead net of handling time (ms, median of {n} pairs)", f"{med:.0f}", "< 100", verdict(lo, hi, 100.0)))
        rows.append(("  95 % bootstrap interval of that median (ms)", f"[{lo:.0f}, {hi:.0f}]", "", ""))
        rows.append(("  outside handling per strike: embedded / RabbitMQ (ms, medians)",
                     f"{1000 * statistics.median(emb_out):.0f} / {1000 * statistics.median(rab_out):.0f}", "", ""))

    # 2. throughput with 1 and 2 worker processes (every kind in each; one BLAS thread per process)
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    def run_strikes(seeds) -> float:
        """Publish one strike per seed, wait for them all; wall seconds."""
        msgs = [strike_message(raw, seed=s) for s in seeds]
        t = time.perf_counter()
        with RabbitPublisher(args.broker, prefix=prefix) as pub:
            for m in msgs:
                store.record_strike(m.strike_id, domain="hvac", status="requested")
                pub.publish(m)
        wait_all([m.strike_id for m in msgs])
        return time.perf_counter() - t

    rates = {}
    for n in (1, 2):
        workers = [start_workers(args.broker, prefix, logs / f"n{n}-{i}") for i in range(n)]
        try:
            # warm-up: every process's first strike pays its one-time costs (the renderers' imports, the first
            # figures); a fleet runs day after day, so the rate is timed on warm processes
            run_strikes(range(10_000 + 100 * n, 10_000 + 100 * n + 2 * n))
            rates[n] = args.strikes / run_strikes(range(100 * n, 100 * n + args.strikes))
        finally:
            stop_workers(*workers)
    ratio = rates[2] / rates[1]
    rows.append(("throughput, 1 worker process (strikes/s)", f"{rates[1]:.2f}", "", ""))
    rows.append(("throughput, 2 worker processes (strikes/s)", f"{rates[2]:.2f}", "", ""))
    rows.append(("2 processes / 1 process", f"{ratio:.2f}x", ">= 1.7x", "yes" if ratio >= 1.7 else "NO"))

    if not args.throughput_only:
        # 3. the regiment's publish path, as the daemon runs it: claim every due period with its request in the
        # store's outbox (one transaction per pass), then the relay publishes them in batches of 500, awaits each batch's confirms and marks the batch sent
        from industriverse.fleet.regiment import strike_id_for
        from messages import Message, StrikeRequested, to_dict
        from workers.outbox import relay_outbox

        body = StrikeRequested(domain="hvac", constraint=raw, seed=0, backoff_k=1.0)
        with RabbitPublisher(args.broker, prefix=prefix) as pub:
            t = time.perf_counter()
            claims = []
            for i in range(args.publish):  # one regiment pass with every contract due
                cid = f"contract-{i}"
                sid = strike_id_for(cid, "bench")
                claims.append({"contract_id": cid, "period_key": "bench", "strike_id": sid, "domain": "hvac",
                               "message": to_dict(Message.start(body, strike_id=sid, contract_id=cid))})
            store.claim_contract_periods(claims)  # the pass's claims with their outbox rows, one transaction
            relayed = relay_outbox(send_batch=pub.publish_batch, limit=args.publish)  # as the regiment relays
            rate = len(relayed.sent) / (time.perf_counter() - t)
        rows.append(("regiment: claimed + confirmed requests per second", f"{rate:.0f}", ">= 500", "yes" if rate >= 500 else "NO"))
    delete_topology(args.broker, prefix)

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  {'target':>8}  met")
    for name, value, target, met in rows:
        print(f"{name:<{width}}  {value:>10}  {target:>8}  {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
