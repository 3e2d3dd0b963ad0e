"""Aggregate statistics (IQM, stratified bootstrap, probability of improvement, profiles)."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from dream_rl.experiments.config import ConfigError
from dream_rl.experiments.stats import (
    PolicyAggregate,
    aggregate_scores,
    format_aggregate_markdown,
    format_per_env_markdown,
    iqm,
    min_max_normalize,
    performance_profile,
    plot_performance_profiles,
    probability_of_improvement,
    write_aggregate_csv,
)

# Small fixed data (5 and 4 seeds x 3 envs) and what rliable 1.2.0 (the paper's library) gives on
# it: aggregate_iqm, aggregate_mean, aggregate_median, probability_of_improvement(B, A), and 95%
# percentile intervals from its StratifiedBootstrap with 50 000 replicates.
A = np.array([[0.1, 0.5, 0.9], [0.3, 0.4, 0.8], [0.2, 0.7, 1.0], [0.0, 0.6, 0.7], [0.4, 0.5, 0.95]])
B = np.array([[0.3, 0.5, 0.9], [0.5, 0.8, 0.8], [0.2, 0.9, 1.0], [0.6, 0.6, 0.9]])
RLIABLE = {
    "iqm": 0.5444444444444444,
    "mean": 0.5366666666666667,
    "median": 0.54,
    "p_b_over_a": 0.7083333333333334,
    "iqm_ci": (0.4778, 0.6111),
    "mean_ci": (0.4767, 0.5967),
    "median_ci": (0.46, 0.64),
    "p_ci": (0.5083, 0.8833),
}


def test_iqm_of_known_arrays():
    # 8 values: the 2 lowest and 2 highest are dropped, the middle 4 averaged.
    values = np.array([[0.0, 100.0, 1.0, 2.0], [3.0, 4.0, -50.0, 7.0]])
    assert iqm(values) == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert iqm(np.full((3, 4), 0.7)) == pytest.approx(0.7)
    # 6 values: floor(6/4) = 1 dropped at each end, as scipy.stats.trim_mean(x, 0.25) does.
    assert iqm(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 60.0]])) == pytest.approx((2 + 3 + 4 + 5) / 4)
    # Batched over leading axes (bootstrap replicates).
    batch = np.stack([values, values + 1])
    np.testing.assert_allclose(iqm(batch), [2.5, 3.5])


def test_matches_rliable_reference_values():
    a, b = aggregate_scores({"a": A, "b": B}, baseline="a", reps=20_000, seed=3)
    assert a.iqm == pytest.approx(RLIABLE["iqm"])
    assert a.mean == pytest.approx(RLIABLE["mean"])
    assert a.median == pytest.approx(RLIABLE["median"])
    assert b.prob_improvement == pytest.approx(RLIABLE["p_b_over_a"])
    assert a.prob_improvement is None and a.prob_improvement_ci is None
    # Intervals are Monte Carlo estimates: equal up to bootstrap noise.
    for ours, theirs in ((a.iqm_ci, "iqm_ci"), (a.mean_ci, "mean_ci"), (a.median_ci, "median_ci"),
                         (b.prob_improvement_ci, "p_ci")):
        np.testing.assert_allclose(ours, RLIABLE[theirs], atol=0.021)


@pytest.mark.skipif(
    importlib.util.find_spec("rliable") is None, reason="rliable is not installed (only a cross-check)"
)
def test_matches_rliable_live():
    try:
        from rliable import metrics
    except Exception as error:  # noqa: BLE001  rliable 1.2's dependency arch breaks with pandas 3
        pytest.skip(f"rliable does not import here: {type(error).__name__}")
    rng = np.random.default_rng(7)
    x, y = rng.uniform(size=(6, 5)), rng.uniform(size=(3, 5))
    assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
    assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_probability_of_improvement_extremes():
    low = np.array([[0.1, 0.2], [0.2, 0.1], [0.15, 0.0]])
    high = low + 1.0
    assert probability_of_improvement(high, low) == 1.0
    assert probability_of_improvement(low, high) == 0.0
    assert probability_of_improvement(low, low) == 0.5  # ties count one half
    aggregates = aggregate_scores({"low": low, "high": high, "same": low.copy()}, baseline="low", reps=500)
    by_name = {a.policy: a for a in aggregates}
    assert by_name["high"].prob_improvement == 1.0 and by_name["high"].prob_improvement_ci == (1.0, 1.0)
    assert by_name["same"].prob_improvement == 0.5
    assert by_name["low"].prob_improvement is None


def test_probability_of_improvement_averages_envs():
    # Env 0: x always wins; env 1: x always loses -> 0.5 overall.
    x = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([[0.0, 1.0]])
    assert probability_of_improvement(x, y) == 0.5


def test_intervals_cover_and_shrink():
    """Synthetic scores with a known mean: the interval contains it in most of 40 experiments
    (about 95% nominal), and is narrower with more seeds."""
    rng = np.random.default_rng(0)
    true_mean = 0.5
    covered, widths = 0, {}
    for n_seeds in (5, 40):
        w = []
        for trial in range(40 if n_seeds == 5 else 5):
            scores = rng.normal(true_mean, 0.2, size=(n_seeds, 4))
            (aggregate,) = aggregate_scores({"p": scores}, reps=1000, seed=trial)
            low, high = aggregate.mean_ci
            assert low <= aggregate.mean <= high
            assert low <= aggregate.iqm_ci[1] and aggregate.iqm_ci[0] <= aggregate.iqm <= aggregate.iqm_ci[1]
            if n_seeds == 5:
                covered += low <= true_mean <= high
            w.append(high - low)
        widths[n_seeds] = float(np.mean(w))
    assert covered >= 32  # 40 x 0.95 = 38 expected; 32 is far in the tail of Binomial(40, 0.95)
    # The width scales like 1/sqrt(n_seeds): 8x the seeds gives about 1/2.8 the width.
    assert widths[40] < 0.5 * widths[5]


def test_interval_level_and_seed():
    scores = {"p": np.random.default_rng(1).uniform(size=(10, 3)), "q": np.random.default_rng(2).uniform(size=(10, 3))}
    first = aggregate_scores(scores, baseline="q", seed=5, reps=800)
    again = aggregate_scores(scores, baseline="q", seed=5, reps=800)
    other = aggregate_scores(scores, baseline="q", seed=6, reps=800)
    assert first == again
    assert first[0].iqm_ci != other[0].iqm_ci
    # A policy's intervals do not depend on the other policies aggregated with it.
    alone = aggregate_scores({"p": scores["p"]}, seed=5, reps=800)
    assert alone[0].iqm_ci == first[0].iqm_ci
    narrow = aggregate_scores(scores, confidence=0.5, seed=5, reps=800)[0]
    assert narrow.iqm_ci[1] - narrow.iqm_ci[0] < first[0].iqm_ci[1] - first[0].iqm_ci[0]


def test_stratified_bootstrap_keeps_envs_apart():
    """Seeds are resampled within each env: with env 0 always 0 and env 1 always 1, every
    replicate has a mean of exactly 0.5 (an unstratified bootstrap would vary)."""
    scores = np.array([[0.0, 1.0]] * 6)
    (aggregate,) = aggregate_scores({"p": scores}, reps=500)
    assert aggregate.mean_ci == (0.5, 0.5)
    assert aggregate.median_ci == (0.5, 0.5)


def test_bad_input():
    with pytest.raises(ConfigError, match="same|every policy"):
        aggregate_scores({"a": np.zeros((3, 2)), "b": np.zeros((3, 3))})
    with pytest.raises(ConfigError, match="baseline 'c'"):
        aggregate_scores({"a": np.zeros((3, 2))}, baseline="c")
    with pytest.raises(ConfigError, match="shape"):
        aggregate_scores({"a": np.zeros(3)})
    with pytest.raises(ConfigError, match="NaN"):
        aggregate_scores({"a": np.array([[np.nan, 1.0]])})
    with pytest.raises(ConfigError, match="confidence"):
        aggregate_scores({"a": np.zeros((3, 2))}, confidence=95)


def test_performance_profile_values_and_plot(tmp_path):
    scores = np.array([[0.0, 0.5], [1.0, 0.25]])
    taus = np.array([-0.1, 0.0, 0.3, 0.5, 0.99, 1.0])
    profile, band = performance_profile(scores, taus, reps=300)
    np.testing.assert_allclose(profile, [1.0, 0.75, 0.5, 0.25, 0.25, 0.0])
    assert band.shape == (2, len(taus))
    assert np.all(band[0] <= profile + 1e-12) and np.all(profile <= band[1] + 1e-12)
    path = tmp_path / "sub" / "profiles.png"
    plot_performance_profiles({"a": scores, "b": scores * 0.5}, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_and_csv(tmp_path):
    aggregates = aggregate_scores({"dream": B, "lstm": A}, baseline="lstm", reps=300)
    text = format_aggregate_markdown(aggregates, baseline="lstm")
    lines = text.strip().splitlines()
    assert lines[0].startswith("| policy | IQM [95% CI]") and "P(policy > lstm)" in lines[0]
    assert len(lines) == 4 and "(baseline)" in lines[3]
    assert f"**{aggregates[0].iqm:.3f} [" in lines[2]  # dream has the best IQM
    no_baseline = format_aggregate_markdown(aggregates, baseline=None, confidence=0.9)
    assert "P(policy" not in no_baseline and "IQM [90% CI]" in no_baseline
    path = tmp_path / "aggregate.csv"
    write_aggregate_csv(aggregates, path)
    rows = list(csv.DictReader(path.open()))
    assert [r["policy"] for r in rows] == ["dream", "lstm"]
    assert float(rows[0]["iqm"]) == pytest.approx(aggregates[0].iqm)
    assert float(rows[0]["prob_improvement_low"]) == pytest.approx(aggregates[0].prob_improvement_ci[0])
    assert rows[1]["prob_improvement"] == ""
    assert isinstance(aggregates[0], PolicyAggregate)


def test_per_env_table_means_best_and_counts():
    scores = {
        "dream": np.array([[1.0, 0.2, 0.5], [0.0, 0.4, 0.5]]),  # env means 0.5, 0.3, 0.5
        "lstm": np.array([[0.4, 0.3, 0.5]]),
        "gru": np.array([[0.6, 0.1, 0.7], [0.6, 0.1, 0.7]]),
    }
    text = format_per_env_markdown(scores, ["A", "B", "C"], references=["lstm", "gru", "absent"])
    lines = text.strip().splitlines()
    assert lines[0] == "| policy | A | B | C | envs ≥ lstm and gru |"
    assert lines[2] == "| dream | 0.50 | **0.30** | 0.50 | 1 / 3 |"  # only B: A and C lose to the GRU
    assert lines[3] == "| lstm | 0.40 | **0.30** | 0.50 | 1 / 3 |"  # a tie with the best is bold too
    assert lines[4] == "| gru | **0.60** | 0.10 | **0.70** | 2 / 3 |"
    assert "envs ≥" not in format_per_env_markdown(scores, ["A", "B", "C"])
    with pytest.raises(ConfigError, match="one label per env"):
        format_per_env_markdown(scores, ["A", "B"])


def test_min_max_normalize_per_env_over_all_policies():
    a = np.array([[0.0, 10.0, 5.0], [50.0, 20.0, 5.0]])
    b = np.array([[100.0, 30.0, 5.0]])
    out = min_max_normalize({"a": a, "b": b}, envs=[0, 2])
    np.testing.assert_allclose(out["a"], [[0.0, 10.0, 0.5], [0.5, 20.0, 0.5]])  # env 1 left as is
    np.testing.assert_allclose(out["b"], [[1.0, 30.0, 0.5]])
    everything = min_max_normalize({"a": a, "b": b})
    np.testing.assert_allclose(everything["a"][:, 1], [0.0, 0.5])
    assert a[0, 0] == 0.0 and a[1, 0] == 50.0  # inputs untouched
