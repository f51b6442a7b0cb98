"""Statistics of ensembles: exact binomial bounds, paired t-intervals, percentile bands.

* :func:`clopper_pearson_upper` / :func:`clopper_pearson_lower`: one-sided exact (Clopper–Pearson)
  confidence bounds of a binomial proportion from ``k`` successes in ``n`` trials, through the
  beta quantiles (``scipy.special.betaincinv``, the inverse regularised incomplete beta function).
* :func:`t_interval`: the Student-t confidence interval of a mean (paired differences of
  per-trajectory KPIs under common random numbers).
* :func:`summary` and :func:`percentile_bands`: the shapes the simulation JSON uses.
"""
from __future__ import annotations

import numpy as np

BAND_PERCENTILES = (1, 5, 50, 95, 99)


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper ``confidence`` bound of a proportion seen ``k`` times in ``n`` trials.

    The smallest p with ``P(Bin(n, p) ≤ k) ≤ 1 − confidence``: the beta(k+1, n−k) quantile at ``confidence``;
    1 when ``k = n``.
    """
    k, n = int(k), int(n)
    _check(k, n, confidence)
    if k >= n:
        return 1.0
    from scipy import special  # here: the report's render processes format these figures without scipy

    return float(special.betaincinv(k + 1, n - k, confidence))


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided lower ``confidence`` bound of a proportion seen ``k`` times in ``n`` trials.

    The largest p with ``P(Bin(n, p) ≥ k) ≤ 1 − confidence``: the beta(k, n−k+1) quantile at ``1 − confidence``;
    0 when ``k = 0``.
    """
    k, n = int(k), int(n)
    _check(k, n, confidence)
    if k <= 0:
        return 0.0
    from scipy import special

    return float(special.betaincinv(k, n - k + 1, 1.0 - confidence))


def _check(k: int, n: int, confidence: float) -> None:
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ k ≤ n and n ≥ 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def t_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Student-t ``confidence`` interval of the mean of ``samples`` (1-D).

    A sample without spread (or of one value) gives the degenerate interval [mean, mean].
    """
    x = np.asarray(samples, dtype=float).ravel()
    mean = float(x.mean())
    if x.size < 2:
        return mean, mean
    sem = float(x.std(ddof=1)) / np.sqrt(x.size)
    if not sem > 0.0:
        return mean, mean
    from scipy import special  # the quantile functions only: scipy.stats takes ~0.4 s to import

    half = sem * float(special.stdtrit(x.size - 1, 0.5 + confidence / 2.0))  # the t quantile
    return mean - half, mean + half


def summary(samples: np.ndarray) -> dict[str, float]:
    """``{mean, std, p5, p50, p95}`` of a 1-D sample (std with ddof=1, 0 for one value)."""
    x = np.asarray(samples, dtype=float).ravel()
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "p5": float(p5),
        "p50": float(p50),
        "p95": float(p95),
    }


def percentile_bands(samples: np.ndarray, percentiles=BAND_PERCENTILES) -> dict[str, list[float]]:
    """``{"p1": [...], ...}``: percentiles over the first axis of ``samples`` (N, T), per column."""
    q = np.percentile(np.asarray(samples, dtype=float), percentiles, axis=0)
    return {f"p{p:g}": [float(v) for v in row] for p, row in zip(percentiles, q)}
