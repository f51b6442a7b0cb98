"""Render processes for the report: the plots drawn in parallel, the PDF set, off the caller's process.

A strike's report is mostly matplotlib and fpdf: importing them (~0.5-0.7 s), drawing four
plots (~0.15-0.3 s each) and setting the PDF.  :func:`start` starts, in the background, a
``multiprocessing`` fork server that imports the renderers once (:mod:`industriverse.report.preload`)
and a pool of processes forked from it, so

* a fresh command (the command-line strike) pays those imports on the other core while it
  imports and runs the strike itself;
* the four plots of a report are drawn side by side, and the PDF is set in another process
  meanwhile (its text first; each plot is embedded once its file is written whole, by a
  rename), so both cores stay busy until the report is done;
* :func:`prerender` starts a strike's plots as soon as its simulation exists, while the shield,
  signing and deployment run: the plots depend on the optimization and the simulation only.

Without :func:`start` (tests, the report script, the console, worker processes: each of those
keeps to one core so that worker processes scale) everything is drawn in the calling process
exactly as before.  An error in a render process is raised in the caller as
itself (its message and type); a render process that dies is replaced by drawing in-process,
so a report is never lost to the pool.  The files written are the same either way.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

# 2 cores: the four plots on two processes and the PDF on a third of its own, so the PDF's text is
# set while the plots draw (each plot embedded once written) and both cores stay busy to the end
PROCESSES = 2
PRELOAD = ["industriverse.report.preload"]

_lock = threading.Lock()
_executor = None  # concurrent.futures.ProcessPoolExecutor of the plots once started
_documents = None  # the PDF's process (a pool of one), so a PDF never waits behind plots
_processes = PROCESSES
_pending: dict[tuple, tuple[Path, dict[str, Future]]] = {}  # key -> (scratch dir, {plot name: future})

# plots by cost, most expensive first: with two processes the four finish together
_ORDER = ("states", "savings", "power", "cumulative_cost")


def start(processes: int = PROCESSES) -> None:
    """Start the render processes in the background (idempotent; returns at once).

    Call it early in a process that will render, before its own heavy imports: the fork
    server's imports then run on the other core meanwhile.  ``INDUSTRIVERSE_RENDER_PROCESSES=0``
    keeps all drawing in the calling process (one core per process, as before).
    """
    global _executor, _documents, _processes
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import forkserver

    if os.environ.get("INDUSTRIVERSE_RENDER_PROCESSES", "").strip() == "0":
        return
    with _lock:
        if _executor is not None:
            return
        try:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            # the fork server starts now and imports the renderers while the caller goes on; the pool
            # forks its processes from it on the first tasks (waiting, if need be, for those imports)
            forkserver.ensure_running()
            _executor = ProcessPoolExecutor(processes, mp_context=ctx)
            _documents = ProcessPoolExecutor(1, mp_context=ctx)
            _processes = processes
        except (OSError, ValueError) as exc:  # no fork server here (platform, sockets): render in-process
            import logging

            logging.getLogger(__name__).warning("render processes unavailable (%s): reports are drawn in-process",
                                                exc.__class__.__name__)


def ready() -> bool:
    """A task that does nothing: submitting it makes a pool fork a process (named here, in this light module)."""
    return True


def warm() -> None:
    """Fork the render processes now, on a thread (each waits for the fork server's imports), so a
    strike about to run finds them forked when its plots start; returns at once."""
    plots, documents, n = _executor, _documents, _processes
    if plots is None or documents is None:
        return

    def fork() -> None:
        try:
            for _ in range(n):  # a pool forks a process per task while none is idle
                plots.submit(ready)
            documents.submit(ready)
        except RuntimeError:  # stopped meanwhile
            pass

    threading.Thread(target=fork, name="render-processes", daemon=True).start()


def running() -> bool:
    """Whether :func:`start` was called (and the pool not stopped)."""
    return _executor is not None


def stop() -> None:
    """Stop the render processes (pending prerenders are dropped)."""
    global _executor, _documents
    with _lock:
        executors, _executor, _documents = (_executor, _documents), None, None
        pending = list(_pending.values())
        _pending.clear()
    for scratch, futures in pending:
        for f in futures.values():
            f.cancel()
        shutil.rmtree(scratch, ignore_errors=True)
    for executor in executors:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def _broken() -> None:
    """Forget a pool whose process died: this report is drawn in-process, the next one gets a new pool."""
    global _executor, _documents
    with _lock:
        executors, _executor, _documents = (_executor, _documents), None, None
    for executor in executors:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    start(_processes)


def _forget_if_broken(exc: BaseException) -> None:
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        _broken()


def _submit_plots(run: dict, value: dict, out_dir: Path, ctx) -> dict[str, Future]:
    from industriverse.report import plots

    run = {"optimization": run.get("optimization"), "simulation": run.get("simulation")}  # all a plot reads
    jobs = {
        "states": (plots.plot_state_bands, run, out_dir / plots.PLOT_FILES["states"], ctx),
        "savings": (plots.plot_savings_distribution, run, value, out_dir / plots.PLOT_FILES["savings"]),
        "power": (plots.plot_power_and_tariff, run, out_dir / plots.PLOT_FILES["power"], ctx),
        "cumulative_cost": (plots.plot_cumulative_cost, run, out_dir / plots.PLOT_FILES["cumulative_cost"], ctx),
    }
    return {name: _executor.submit(*jobs[name]) for name in _ORDER}


def prerender(key: tuple, run: dict) -> None:
    """Start drawing the plots of ``run`` (its optimization and simulation documents) ahead of its report.

    ``key`` names those two documents (their store keys); :func:`draw` with the same key
    collects the plots.  Does nothing unless the render processes run.  The envelope and the
    tariff are re-derived here (the caller may read CSV series a render process may not).
    """
    if _executor is None or key in _pending:
        return
    from industriverse.report.plots import series_context
    from industriverse.report.value import compute_value

    ctx = series_context(run)
    value = compute_value({"optimization": run["optimization"], "simulation": run["simulation"]})
    scratch = Path(tempfile.mkdtemp(prefix="industriverse-plots-"))
    try:
        _pending[key] = (scratch, _submit_plots(run, value, scratch, ctx))
    except RuntimeError as exc:  # the pool was shut down or broke meanwhile: the report draws them
        _forget_if_broken(exc)
        shutil.rmtree(scratch, ignore_errors=True)


def forget(key: tuple) -> None:
    """Drop the prerendered plots of ``key`` (a strike that ended without using them)."""
    entry = _pending.pop(key, None)
    if entry is not None:
        scratch, futures = entry
        for f in futures.values():
            f.cancel()
        for f in futures.values():
            if not f.cancelled():
                try:
                    f.result()
                except Exception:  # noqa: BLE001 - unused plots: their errors do not matter
                    pass
        shutil.rmtree(scratch, ignore_errors=True)


def start_plots(run: dict, value: dict, out_dir: str | Path, *, key: tuple | None = None):
    """Start the four plots of ``run`` in the render processes: the ones :func:`prerender` started for
    ``key``, else new ones writing into ``out_dir``.  A handle for :func:`finish_plots` (None: not
    started, they are drawn there in this process)."""
    from industriverse.report.plots import series_context

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entry = _pending.pop(key, None) if key is not None else None
    if entry is not None:
        return entry
    if _executor is None:
        return None
    try:
        return None, _submit_plots(run, value, out_dir, series_context(run))
    except RuntimeError as exc:  # shut down or broken meanwhile: drawn in this process
        _forget_if_broken(exc)
        return None


def finish_plots(handle, run: dict, value: dict, out_dir: str | Path) -> dict[str, Path]:
    """The plots in ``out_dir`` (``{name: path}`` like :func:`industriverse.report.plots.make_plots`):
    waits for those :func:`start_plots` started (copying prerendered ones into ``out_dir`` as each is
    done), or draws them here.  A plot's error is raised here."""
    from concurrent.futures.process import BrokenProcessPool

    from industriverse.report.plots import PLOT_FILES, make_plots

    out_dir = Path(out_dir)
    if handle is not None:
        scratch, futures = handle
        try:
            paths = {}
            for name, f in futures.items():  # each as soon as it is drawn: the PDF being set may wait for it
                f.result()
                paths[name] = out_dir / PLOT_FILES[name]
                if scratch is not None:
                    part = out_dir / f".{PLOT_FILES[name]}.part"
                    shutil.copyfile(scratch / PLOT_FILES[name], part)
                    os.replace(part, paths[name])
            return {name: paths[name] for name in PLOT_FILES}
        except BrokenProcessPool:
            _broken()
            for part in out_dir.glob(".*.part"):  # a file a dead process was writing: not part of the report
                part.unlink(missing_ok=True)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
    return make_plots(run, value, out_dir)


def draw(run: dict, value: dict, out_dir: str | Path, *, key: tuple | None = None) -> dict[str, Path]:
    """The four plots of ``run`` in ``out_dir``: :func:`start_plots` then :func:`finish_plots`."""
    return finish_plots(start_plots(run, value, out_dir, key=key), run, value, out_dir)


def submit(fn, *args, **kwargs) -> Future | None:
    """Start ``fn(*args, **kwargs)`` in the document process (``fn`` importable there: the PDF); None
    when the render processes do not run."""
    executor = _documents
    if executor is None:
        return None
    try:
        return executor.submit(fn, *args, **kwargs)
    except RuntimeError as exc:  # shut down or broken meanwhile: :func:`result` runs it here
        _forget_if_broken(exc)
        return None


def result(future: Future | None, fn, *args, **kwargs):
    """What :func:`submit` started (its error raised here), or ``fn(*args, **kwargs)`` run here when it
    could not start or its process died."""
    from concurrent.futures.process import BrokenProcessPool

    if future is not None:
        try:
            return future.result()
        except BrokenProcessPool:
            _broken()
    return fn(*args, **kwargs)


FAILED_SUFFIX = ".failed"
WAIT_LIMIT_S = 600.0


def wait_for_file(path: str | Path, *, limit: float = WAIT_LIMIT_S) -> None:
    """Wait until ``path`` exists (a plot another process is drawing; written whole by a rename).

    Raises ``RuntimeError`` when a ``<path>.failed`` marker appears instead (the plot's error is
    raised by whoever drew it) and ``TimeoutError`` after ``limit`` s."""
    path = Path(path)
    failed = path.with_name(path.name + FAILED_SUFFIX)
    deadline = time.monotonic() + limit
    delay = 0.002
    while not path.exists():
        if failed.exists():
            raise RuntimeError(f"{path.name} was not drawn")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} was not drawn within {limit:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.02)


def abandon(future: Future | None, paths) -> None:
    """The plots ``paths`` will not be drawn: let the PDF ``future`` waiting for them end, then clean up."""
    if future is None:
        return
    markers = [Path(p).with_name(Path(p).name + FAILED_SUFFIX) for p in paths if not Path(p).exists()]
    for m in markers:
        m.touch()
    try:
        future.result()
    except BaseException:  # noqa: BLE001 - the plot's error is the one reported
        pass
    for m in markers:
        m.unlink(missing_ok=True)
