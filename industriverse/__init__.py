"""Industriverse value loop: the domain core (no broker).

Results must be reproducible from their seed on any machine and in any process (a worker of
the fleet and the embedded bus give the same plan), and BLAS reductions with several threads
are not bit-for-bit reproducible; so the core runs its linear algebra on one BLAS thread.
Its matrices are small, and a fleet scales by processes, not threads.
"""
import os
import sys
from pathlib import Path

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _var in _THREAD_VARS:
    os.environ.setdefault(_var, "1")  # takes effect where numpy is not loaded yet (and in child processes)

if "numpy" in sys.modules or any(os.environ[_var] != "1" for _var in _THREAD_VARS):
    # numpy was loaded before us, or is told to use more threads: limit its BLAS now.  Otherwise numpy is
    # not imported here: it loads with one BLAS thread when first used, and a command can start its render
    # processes (industriverse.report.pool) before paying for it
    from threadpoolctl import threadpool_limits as _threadpool_limits

    import numpy as _numpy  # noqa: F401  (load BLAS so the limit below applies to it)

    _threadpool_limits(limits=1, user_api="blas")

__version__ = "0.1.0"


def data_home() -> Path:
    """The data directory: ``$INDUSTRIVERSE_HOME`` or ``~/.industriverse`` (created).

    It holds the signing keys (``keys/``), the SQLite store, deployed capsules and scratch runs;
    every stage may need it, so it lives at the top of the package.
    """
    path = Path(os.environ.get("INDUSTRIVERSE_HOME") or Path.home() / ".industriverse").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
