"""Time the command-line strike of the hvac example from a fresh process (DESIGN.md §6: < 1.5 s).

    python benchmarks/strike.py [--runs 7] [--baseline OTHER_CHECKOUT] [--from-source] [--realtime]

Runs ``python cli/run_client_strike_loop.py --domain hvac --constraint_json
examples/hvac_testcase1.json --allow-past --quiet --output_dir DIR`` ``--runs`` times (a
throw-away data directory, so every run registers a new capsule, after one warm-up run that
makes the keys and the store) and prints the median and best wall time, the CPU seconds of the
command's own process and, apart, those of its render processes (the fork server that imports
the renderers, the processes that draw the plots and set the PDF; Linux: counted once they
are reaped here), with the load average before and after.  On a shared machine the wall
time mostly measures the other processes: the CPU seconds and the best run say more there.

Bytecode: an installed package (pip, the docker image) ships its modules compiled, but this
sandbox sets PYTHONDONTWRITEBYTECODE=1, so a checkout's ~70 modules would be compiled from
source in every fresh process (~0.15-0.2 s of the command's CPU, and as much again in the render
processes).  So by default the checkout's packages are byte-compiled first (``compileall`` into
their ``__pycache__``, what an install does) and the output says so; ``--from-source`` skips that
step (modules compiled on every run unless some ``__pycache__`` is already there: the output says
which).

``--realtime`` (Linux, root) runs the strikes and their render processes round-robin at real-time
priority (``SCHED_RR``), so that on a shared machine other processes do not take their cores: the
wall time then approximates a quiet machine's (the kernel still leaves 5 % of each core to the rest).

``--baseline DIR`` times another checkout of the project (e.g. ``git worktree add /tmp/base REV``)
in the same way, alternating run by run with this one, so both see the same load.
"""
from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.5
PACKAGES = ("cli", "workers", "industriverse", "messages")


def byte_compile(root: Path) -> None:
    """Compile the checkout's packages into ``__pycache__`` (what installing the package does)."""
    for name in PACKAGES:
        if not compileall.compile_dir(str(root / name), quiet=1, workers=1):
            raise SystemExit(f"byte-compiling {root / name} failed")


def compiled(root: Path) -> bool:
    """Whether the checkout's modules have bytecode next to them (the command loads it)."""
    return (root / "industriverse" / "__pycache__").is_dir()


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux ``PR_SET_CHILD_SUBREAPER``), so
    the render processes, which outlive the command by a moment, can be waited for and their CPU
    counted.  False where that is not available (their CPU is then not reported)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def one_strike(root: Path, out: Path, env: dict, adopted: bool) -> tuple[float, float, float | None]:
    """(wall s, CPU s of the command's own process, CPU s of its render processes or None) of one
    fresh strike of the checkout ``root``."""
    cmd = [sys.executable, str(root / "cli" / "run_client_strike_loop.py"), "--domain", "hvac", "--constraint_json",
           str(root / "examples" / "hvac_testcase1.json"), "--allow-past", "--quiet", "--output_dir", str(out)]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the command alone: it does not wait for its fork server
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        render = None
        if adopted:  # the fork server and its render processes, reparented here once the command exits
            render = 0.0
            while True:
                try:
                    _, _, u = os.wait4(-1, 0)
                except ChildProcessError:
                    break
                render += u.ru_utime + u.ru_stime
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip()[-500:]
            raise SystemExit(f"strike of {root} failed (exit {proc.returncode}): {tail}")
    return wall, usage.ru_utime + usage.ru_stime, render


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7, help="fresh strikes per checkout (default 7)")
    p.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                   help="another checkout timed alternately with this one (same load)")
    p.add_argument("--from-source", dest="from_source", action="store_true",
                   help="do not byte-compile the checkouts first")
    p.add_argument("--realtime", action="store_true",
                   help="run the strikes at real-time round-robin priority (Linux, root): a quiet machine's wall time")
    args = p.parse_args()
    if args.realtime:
        try:  # inherited by the command and its render processes
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        except (AttributeError, PermissionError, OSError) as exc:
            raise SystemExit(f"--realtime: cannot set SCHED_RR ({exc})")
    roots = {"this checkout": ROOT}
    if args.baseline is not None:
        roots = {"baseline": args.baseline.resolve(), "this checkout": ROOT}
    if not args.from_source:
        for root in roots.values():
            byte_compile(root)
    adopted = adopt_orphans()
    envs, walls, cpus, renders = {}, {}, {}, {}
    for label, root in roots.items():
        home = tempfile.mkdtemp(prefix="iv-strike-bench-")
        env = dict(os.environ, INDUSTRIVERSE_HOME=home, PYTHONPATH=str(root))
        env.pop("INDUSTRIVERSE_DB_URL", None)
        envs[label] = (env, Path(home))
        walls[label], cpus[label], renders[label] = [], [], []
        one_strike(root, Path(home) / "warm-up", env, adopted)  # keys, store schema, page cache
    load_before = os.getloadavg()[0]
    for i in range(args.runs):
        for label, root in roots.items():  # alternating: both checkouts see the same load
            env, home = envs[label]
            wall, cpu, render = one_strike(root, home / f"run{i}", env, adopted)
            walls[label].append(wall)
            cpus[label].append(cpu)
            renders[label].append(render)
    load_after = os.getloadavg()[0]
    for _, home in envs.values():
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average before {load_before:.2f}, after {load_after:.2f} (1 min; {os.cpu_count()} cores)"
          + ("; strikes at real-time priority (SCHED_RR)" if args.realtime else ""))
    for label, root in roots.items():
        how = "byte-compiled first (compileall, as installed)" if not args.from_source else (
            "bytecode found in __pycache__" if compiled(root) else "compiled from source on every run")
        med = statistics.median(walls[label])
        print(f"{label} ({root}; modules {how}):")
        print(f"  command-line strike, wall: median {med:.2f} s, best {min(walls[label]):.2f} s of {args.runs}"
              f" (target < {TARGET_S} s: {'met' if med < TARGET_S else 'NOT met'})")
        print(f"  CPU of the command's own process: median {statistics.median(cpus[label]):.2f} s,"
              f" best {min(cpus[label]):.2f} s")
        if adopted:
            print(f"  CPU of its render processes (fork server, plots, PDF): median"
                  f" {statistics.median(renders[label]):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
