"""Aggregate scores over a suite of environments, as Agarwal et al. recommend.

Agarwal, Schwarzer, Castro, Courville, Bellemare: "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021. With a few seeds per environment, a mean or median over
environments is a poor summary and a point estimate without an interval says little. This module
computes, from the normalized scores of every (seed, env) run of each policy:

- the **interquartile mean** (IQM): the mean of the middle 50% of all runs' scores (pooled over
  seeds and envs), robust to outlier runs yet using more runs than the median;
- the **mean** and the **median** (of the per-env mean scores, as in the paper's ``rliable``);
- **stratified bootstrap** confidence intervals: every replicate resamples the seeds *within each
  env* with replacement (the envs are fixed, the seeds are the random draw), and the interval is
  the percentile interval of the statistic over the replicates;
- the **probability of improvement** P(X > Y) of a policy X over a baseline Y: for each env the
  Mann-Whitney statistic P(x > y) + ½ P(x = y) over all pairs of runs, averaged over envs, with a
  stratified bootstrap interval resampling X's and Y's seeds independently;
- **performance profiles**: the fraction of runs whose score exceeds τ, as a function of τ, with a
  bootstrap band.

The statistics follow the definitions of the paper's library ``rliable`` (``aggregate_iqm`` is
``scipy.stats.trim_mean(scores, 0.25)`` over all runs, ``aggregate_median`` the median over envs of
the per-env means). They are computed here in vectorised numpy: rliable 1.2 depends on ``arch``,
which fails to import with pandas 3, and its bootstrap loops in Python. ``tests/experiments/test_stats.py``
checks these numbers against rliable's.

Array shapes: ``scores[policy]`` is ``(n_seeds, n_envs)``; every policy has the same ``n_envs`` (in
the same order) and may have its own ``n_seeds``.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dream_rl.experiments.config import ConfigError

__all__ = [
    "PolicyAggregate",
    "aggregate_scores",
    "format_aggregate_markdown",
    "format_per_env_markdown",
    "iqm",
    "min_max_normalize",
    "named_rng",
    "percentile_interval",
    "performance_profile",
    "plot_performance_profiles",
    "probability_of_improvement",
    "stratified_bootstrap",
    "write_aggregate_csv",
]

# Bootstrap replicates are drawn in blocks so that a block holds at most this many scores.
_BLOCK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class PolicyAggregate:
    """Aggregate statistics of one policy's normalized scores over seeds and envs.

    Each ``*_ci`` is a (low, high) stratified-bootstrap percentile interval at the ``confidence``
    given to :func:`aggregate_scores`. ``prob_improvement`` is P(this policy > baseline) and is
    None for the baseline itself and when no baseline was given.
    """

    policy: str
    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]
    median: float
    median_ci: tuple[float, float]
    prob_improvement: float | None
    prob_improvement_ci: tuple[float, float] | None


# --------------------------------------------------------------------------------------------
# Statistics of one (…, n_seeds, n_envs) array; leading axes are bootstrap replicates.


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean of ``(..., n_seeds, n_envs)`` scores over the last two axes.

    The ``floor(n / 4)`` lowest and highest of the ``n = n_seeds * n_envs`` scores are dropped
    and the rest averaged, as ``scipy.stats.trim_mean(scores, 0.25, axis=None)`` does.
    """
    flat = np.sort(scores.reshape(*scores.shape[:-2], -1), axis=-1)
    cut = int(0.25 * flat.shape[-1])
    return flat[..., cut : flat.shape[-1] - cut].mean(axis=-1)


def _mean(scores: np.ndarray) -> np.ndarray:
    return scores.mean(axis=(-2, -1))


def _median_of_env_means(scores: np.ndarray) -> np.ndarray:
    return np.median(scores.mean(axis=-2), axis=-1)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) for ``x: (..., n, n_envs)`` and ``y: (..., m, n_envs)``.

    Per env, the Mann-Whitney U statistic over the n·m pairs, divided by n·m (ties count ½),
    then the mean over envs. 1 when every run of X beats every run of Y in every env, 0.5 for
    identical distributions, 0 when X is dominated.
    """
    difference = x[..., :, None, :] - y[..., None, :, :]  # (..., n, m, n_envs)
    per_env = (difference > 0).mean(axis=(-3, -2)) + 0.5 * (difference == 0).mean(axis=(-3, -2))
    return per_env.mean(axis=-1)


# --------------------------------------------------------------------------------------------
# Stratified bootstrap


def _resample_seeds(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``(reps, n_seeds, n_envs)``: each replicate draws n_seeds seeds with replacement, per env."""
    n_seeds, n_envs = scores.shape
    index = rng.integers(0, n_seeds, size=(reps, n_seeds, n_envs))
    return scores[index, np.arange(n_envs)]


def _blocks(reps: int, elements_per_rep: int) -> list[int]:
    size = max(1, _BLOCK_ELEMENTS // max(elements_per_rep, 1))
    return [min(size, reps - start) for start in range(0, reps, size)]


def stratified_bootstrap(
    statistic: Callable[..., np.ndarray],
    arrays: tuple[np.ndarray, ...],
    reps: int,
    rng: np.random.Generator,
    work_per_rep: int | None = None,
) -> np.ndarray:
    """``(reps, ...)`` values of ``statistic(*resampled)``; each ``(n_seeds, n_envs)`` array has
    its seeds resampled within each env, independently of the other arrays. Replicates go through
    ``statistic`` in blocks of at most a few million elements of work (``work_per_rep`` each;
    by default enough for a pairwise comparison of the arrays)."""
    per_rep = work_per_rep or sum(a.size for a in arrays) * max(a.shape[0] for a in arrays)
    values = [statistic(*(_resample_seeds(a, block, rng) for a in arrays)) for block in _blocks(reps, per_rep)]
    return np.concatenate(values)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``values``: their (1-c)/2 and (1+c)/2 percentiles."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator per ``names`` (a policy, a pair, a policy and env), so that one interval does not
    depend on which others are computed with it or in which order."""
    return np.random.default_rng([seed, *(zlib.crc32(name.encode()) for name in names)])


# --------------------------------------------------------------------------------------------
# The aggregate table


def _check_scores(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not scores:
        raise ConfigError("aggregate_scores: no policies given")
    checked: dict[str, np.ndarray] = {}
    n_envs = None
    for policy, values in scores.items():
        array = np.asarray(values, dtype=float)
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise ConfigError(f"scores[{policy!r}]: expected a (n_seeds, n_envs) array with both >= 1, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ConfigError(f"scores[{policy!r}]: contains NaN or inf")
        if n_envs is not None and array.shape[1] != n_envs:
            raise ConfigError(
                f"scores[{policy!r}]: {array.shape[1]} envs, but other policies have {n_envs}: "
                "every policy needs a score on every env"
            )
        n_envs = array.shape[1]
        checked[str(policy)] = array
    return checked


def aggregate_scores(
    scores: Mapping[str, np.ndarray],
    baseline: str | None = None,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[PolicyAggregate]:
    """IQM, mean and median with stratified-bootstrap intervals, and P(policy > baseline), for
    each policy in the order given.

    Args:
        scores: ``policy -> (n_seeds, n_envs)`` normalized scores (same envs for every policy).
        baseline: the policy the others are compared to (None: no probability of improvement).
        reps: bootstrap replicates per interval.
        confidence: size of the intervals, in (0, 1).
        seed: the bootstrap's seed; the same inputs and seed give the same intervals.
    """
    arrays = _check_scores(scores)
    if baseline is not None and baseline not in arrays:
        raise ConfigError(f"baseline {baseline!r} is not one of the policies: {', '.join(arrays)}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")

    results = []
    for policy, array in arrays.items():
        rng = named_rng(seed, policy)
        # One set of replicates for the three point statistics (as rliable's joint estimate).
        joint = stratified_bootstrap(
            lambda s: np.stack([iqm(s), _mean(s), _median_of_env_means(s)], axis=-1), (array,), reps, rng
        )
        iqm_ci, mean_ci, median_ci = (percentile_interval(joint[:, k], confidence) for k in range(3))
        improvement = improvement_ci = None
        if baseline is not None and policy != baseline:
            other = arrays[baseline]
            improvement = float(probability_of_improvement(array, other))
            values = stratified_bootstrap(probability_of_improvement, (array, other), reps, named_rng(seed, policy, baseline))
            improvement_ci = percentile_interval(values, confidence)
        results.append(
            PolicyAggregate(
                policy=policy,
                iqm=float(iqm(array)),
                iqm_ci=iqm_ci,
                mean=float(_mean(array)),
                mean_ci=mean_ci,
                median=float(_median_of_env_means(array)),
                median_ci=median_ci,
                prob_improvement=improvement,
                prob_improvement_ci=improvement_ci,
            )
        )
    return results


def min_max_normalize(
    scores: Mapping[str, np.ndarray], envs: Sequence[int] | None = None
) -> dict[str, np.ndarray]:
    """Scores with the env columns ``envs`` (default: all) rescaled to [0, 1] by the lowest and
    highest score of any run of any policy on that env: a stand-in normalization for envs
    without reference random/optimal returns (it depends on which policies are compared). A
    column where every run scored the same becomes 0.5."""
    arrays = _check_scores(scores)
    n_envs = next(iter(arrays.values())).shape[1]
    columns = range(n_envs) if envs is None else envs
    result = {policy: array.copy() for policy, array in arrays.items()}
    for column in columns:
        values = np.concatenate([array[:, column] for array in arrays.values()])
        low, high = values.min(), values.max()
        for policy, array in arrays.items():
            result[policy][:, column] = 0.5 if high == low else (array[:, column] - low) / (high - low)
    return result


# --------------------------------------------------------------------------------------------
# Performance profiles


def performance_profile(
    scores: np.ndarray, taus: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of runs with score > τ for each τ, and its ``(2, len(taus))`` bootstrap band.

    ``scores`` is one policy's ``(n_seeds, n_envs)`` array; every (seed, env) run counts once.
    """
    scores = np.asarray(scores, dtype=float)
    taus = np.asarray(taus, dtype=float)

    def profile(sample: np.ndarray) -> np.ndarray:  # (..., n_seeds, n_envs) -> (..., len(taus))
        flat = sample.reshape(*sample.shape[:-2], -1)
        return (flat[..., None, :] > taus[:, None]).mean(axis=-1)

    rng = np.random.default_rng(seed)
    replicates = stratified_bootstrap(profile, (scores,), reps, rng, work_per_rep=scores.size * taus.size)
    tail = 100 * (1 - confidence) / 2
    band = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return profile(scores), band


def plot_performance_profiles(
    scores: Mapping[str, np.ndarray],
    path: Path,
    title: str = "",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> None:
    """Write a PNG of every policy's performance profile (fraction of runs with normalized score
    > τ against τ) with its stratified-bootstrap band. A curve above another everywhere is
    stochastically dominant; the area under a profile is the mean score."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    arrays = _check_scores(scores)
    pooled = np.concatenate([a.ravel() for a in arrays.values()])
    taus = np.linspace(min(0.0, float(pooled.min())), max(1.0, float(pooled.max())), 201)
    many = len(arrays) > 6  # a legend beside the axes and 20 distinct colours for a large zoo
    figure, axes = plt.subplots(figsize=(8.4 if many else 6.4, 4.2))
    colors = plt.get_cmap("tab20" if len(arrays) > 10 else "tab10").colors
    for k, (policy, array) in enumerate(arrays.items()):
        profile, band = performance_profile(array, taus, reps, confidence, seed)
        n_seeds, n_envs = array.shape
        color = colors[k % len(colors)]
        axes.plot(taus, profile, color=color, label=f"{policy} ({n_seeds} seeds x {n_envs} envs)")
        axes.fill_between(taus, band[0], band[1], color=color, alpha=0.08 if many else 0.2, linewidth=0)
    axes.set_xlabel("normalized score τ")
    axes.set_ylabel("fraction of runs with score > τ")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlim(taus[0], taus[-1])
    axes.grid(alpha=0.3)
    if many:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    else:
        axes.legend(loc="lower left", fontsize="small")
    axes.set_title(title or f"performance profiles ({confidence:.0%} stratified-bootstrap bands)")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --------------------------------------------------------------------------------------------
# Output


def _with_interval(value: float, interval: tuple[float, float]) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def format_aggregate_markdown(
    aggregates: list[PolicyAggregate], baseline: str | None, confidence: float = 0.95
) -> str:
    """A Markdown table: one row per policy, point estimates with their intervals in brackets;
    the best IQM in bold. ``confidence`` only labels the columns (give the one the aggregates
    were computed with)."""
    ci = f"[{confidence:.0%} CI]"
    header = ["policy", f"IQM {ci}", f"median {ci}", f"mean {ci}"]
    if baseline is not None:
        header.append(f"P(policy > {baseline}) {ci}")
    best = max((a.iqm for a in aggregates), default=None)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for aggregate in aggregates:
        iqm_text = _with_interval(aggregate.iqm, aggregate.iqm_ci)
        if len(aggregates) > 1 and aggregate.iqm == best:
            iqm_text = f"**{iqm_text}**"
        row = [
            aggregate.policy,
            iqm_text,
            _with_interval(aggregate.median, aggregate.median_ci),
            _with_interval(aggregate.mean, aggregate.mean_ci),
        ]
        if baseline is not None:
            if aggregate.prob_improvement is None or aggregate.prob_improvement_ci is None:
                row.append("(baseline)" if aggregate.policy == baseline else "")
            else:
                row.append(_with_interval(aggregate.prob_improvement, aggregate.prob_improvement_ci))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


_TIE = 1e-9  # per-env means closer than this are equal (see format_per_env_markdown)


def format_per_env_markdown(scores: Mapping[str, np.ndarray], env_labels: Sequence[str], references: Sequence[str] = ()) -> str:
    """A Markdown table of each policy's mean score over its seeds on every env (rows: policies,
    columns: envs; the best per env in bold), and with ``references``, the number of envs where
    the policy's mean is at least every reference's (ties count: "at least as good as"). For the
    count, means within 1e-9 of each other are ties, so that float rounding of equal scores (two
    seeds at 0.2 and 0.4 against one at 0.3) does not decide it; the bold marks every mean that
    reads the same as the best at the two decimals shown.

    Args:
        scores: ``policy -> (n_seeds, n_envs)`` normalized scores, envs in ``env_labels``' order.
        env_labels: the column headers, one per env.
        references: policies to count against, e.g. ``("lstm", "gru")``; names missing from
            ``scores`` are skipped.
    """
    arrays = _check_scores(scores)
    env_means = {policy: array.mean(axis=0) for policy, array in arrays.items()}  # policy -> (n_envs,)
    n_envs = len(next(iter(env_means.values())))
    if len(env_labels) != n_envs:
        raise ConfigError(f"{len(env_labels)} env labels for {n_envs} envs: give one label per env")
    references = [r for r in references if r in env_means]
    best = np.max(np.stack(list(env_means.values())), axis=0)  # (n_envs,)
    header = ["policy", *env_labels]
    if references:
        header.append(f"envs ≥ {' and '.join(references)}")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for policy, means in env_means.items():
        shown = [f"{m:.2f}" for m in means]
        cells = [f"**{m}**" if len(env_means) > 1 and m == f"{b:.2f}" else m for m, b in zip(shown, best)]
        if references:
            at_least = np.all([means >= env_means[r] - _TIE for r in references], axis=0)
            cells.append(f"{int(at_least.sum())} / {n_envs}")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "policy",
    "iqm", "iqm_low", "iqm_high",
    "median", "median_low", "median_high",
    "mean", "mean_low", "mean_high",
    "prob_improvement", "prob_improvement_low", "prob_improvement_high",
)  # fmt: skip


def write_aggregate_csv(aggregates: list[PolicyAggregate], path: Path) -> None:
    """One row per policy (columns: CSV_COLUMNS; the probability of improvement is empty for the
    baseline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for a in aggregates:
            improvement = (
                [a.prob_improvement, *a.prob_improvement_ci]
                if a.prob_improvement is not None and a.prob_improvement_ci is not None
                else ["", "", ""]
            )
            writer.writerow([a.policy, a.iqm, *a.iqm_ci, a.median, *a.median_ci, a.mean, *a.mean_ci, *improvement])
