"""Compare the policies of an experiment: per env a Markdown and CSV table and a learning-curve
plot; over several envs an aggregate of normalized scores.

Per run (env, policy, seed), from its ``eval.csv``, ``run_info.json`` and ``config.yaml``:

- **final score**: the last evaluation's mean normalized score (``dream_rl.envs.normalized_score``,
  0 = a random/trivial policy, 1 = solved) or, for an env without a normalizer, its mean return;
- **AUC**: the area under the learning curve (score against env steps, trapezoids) divided by the
  steps spanned, i.e. the average score over training (rewards learning early, not only well);
- **env steps/s**: training throughput (rollouts + updates, evaluations and checkpoints excluded).

Per env and policy the table shows mean ± std over seeds (``np.std``, ddof 0), and the settings
the runs were trained with (read from the runs' own ``config.yaml``, not from the command line).
The plot shows, per policy, the mean score over seeds against env steps with a band of ± one std
(curves are interpolated onto a common grid of evaluation steps first).

**Aggregate over envs** (``envs:`` configs with several envs, and a single env trained with at least
:data:`MIN_SEEDS_FOR_INTERVALS` seeds, where it gives intervals over seeds): each run's final normalized score
(for an env without reference returns, its final return min-max scaled over that env's runs) goes
into :mod:`dream_rl.experiments.stats` (Agarwal et al. 2021): IQM, median and mean with
stratified-bootstrap 95% CIs, probability of improvement over ``report.baseline``, performance
profiles, and a policy x env table of mean scores with the number of envs where each policy scores
at least the baseline. A policy enters with the seeds it has on every env.

A report reads files only: ``eval.csv`` and ``run_info.json`` as data, and each run's
``config.yaml`` validated as data (``validate_config(..., build_envs=False)``): no env is built, no
model loaded and nothing named in the folder imported, so a results folder from someone else is as
safe to report on as a CSV file.

Outputs: ``comparison.md``, ``comparison.csv``, ``learning_curves.png`` per env (in the env's
folder; in ``<output_dir>/<name>/`` for the ``env:`` form); with several envs also
``aggregate.md``, ``aggregate.csv``, ``performance_profiles.png``, ``scores.csv`` (every run's final
normalized score, the aggregate's input) and a ``comparison.md`` that holds every table, in
``<output_dir>/<name>/``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, writes PNGs through Agg

from dream_rl.experiments import stats
from dream_rl.experiments.config import ConfigError, EnvConfig, ExperimentConfig, Run, read_yaml, validate_config
from dream_rl.experiments.records import read_eval_record, read_run_info, writable_dir

__all__ = [
    "PolicySummary",
    "Report",
    "RunCurve",
    "area_under_curve",
    "final_scores_over_envs",
    "final_scores_per_env",
    "load_curves",
    "summarize",
    "write_report",
]

# a single env gets the aggregate (bootstrap intervals over seeds, probability of improvement) from this many seeds
MIN_SEEDS_FOR_INTERVALS = 3

# a report is written next to the runs; a folder shared read-only is copied first
_COPY_HINT = "copy the experiment folder somewhere writable and report on the copy"

CSV_COLUMNS = (
    "policy", "class", "seeds", "score", "final_score_mean", "final_score_std", "auc_mean", "auc_std",
    "final_return_mean", "final_return_std", "steps_per_second_mean", "timesteps", "complete_runs",
)


@dataclass
class RunCurve:
    """The evaluation record of one run."""

    run: Run
    timesteps: np.ndarray
    returns: np.ndarray
    scores: np.ndarray | None  # normalized scores, None when the env has no normalizer
    steps_per_second: float
    status: str

    @property
    def label(self) -> str:
        return self.run.policy_label

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def curve(self) -> np.ndarray:
        return self.scores if self.scores is not None else self.returns


@dataclass
class PolicySummary:
    label: str
    policy: str
    seeds: list[int]
    final_score: tuple[float, float]
    auc: tuple[float, float]
    final_return: tuple[float, float]
    steps_per_second: float
    timesteps: int
    complete_runs: int


@dataclass
class Report:
    text: str  # every Markdown table written
    files: list[Path] = field(default_factory=list)


def area_under_curve(timesteps: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``timesteps``, divided by the steps spanned."""
    if len(timesteps) < 2 or timesteps[-1] == timesteps[0]:
        return float(values[-1])
    area = np.sum((values[1:] + values[:-1]) / 2.0 * np.diff(timesteps))
    return float(area / (timesteps[-1] - timesteps[0]))


def load_curves(config: ExperimentConfig, env: EnvConfig) -> tuple[list[RunCurve], list[str]]:
    """The runs on ``env`` that have evaluations, and the names of those that have none."""
    curves, missing = [], []
    for run in config.runs():
        if run.env is not env:
            continue
        rows = read_eval_record(run.run_dir / "eval.csv")
        if not rows:
            missing.append(run.name)
            continue
        info = read_run_info(run.run_dir)
        has_scores = all(row.mean_score is not None for row in rows)
        curves.append(
            RunCurve(
                run=run,
                timesteps=np.array([row.timesteps for row in rows], dtype=float),
                returns=np.array([row.mean_return for row in rows]),
                scores=np.array([row.mean_score for row in rows]) if has_scores else None,
                steps_per_second=float(info.get("steps_per_second", float("nan"))),
                status=str(info.get("status", "unknown")),
            )
        )
    return curves, missing


def summarize(config: ExperimentConfig, curves: list[RunCurve]) -> list[PolicySummary]:
    """Mean ± std over seeds per policy, policies in config order."""
    summaries = []
    for label, spec in config.policies.items():
        runs = [c for c in curves if c.label == label]
        if not runs:
            continue
        finals = np.array([c.curve[-1] for c in runs])
        aucs = np.array([area_under_curve(c.timesteps, c.curve) for c in runs])
        returns = np.array([c.returns[-1] for c in runs])
        summaries.append(
            PolicySummary(
                label=label,
                policy=spec.policy,
                seeds=[c.seed for c in runs],
                final_score=(float(finals.mean()), float(finals.std())),
                auc=(float(aucs.mean()), float(aucs.std())),
                final_return=(float(returns.mean()), float(returns.std())),
                steps_per_second=_mean_of_known([c.steps_per_second for c in runs]),
                timesteps=int(min(c.timesteps[-1] for c in runs)),
                complete_runs=sum(c.status == "completed" for c in runs),
            )
        )
    return summaries


def _mean_of_known(values: list[float]) -> float:
    """The mean of the finite values (NaN when none is known, e.g. runs without run_info.json)."""
    known = [v for v in values if np.isfinite(v)]
    return float(np.mean(known)) if known else float("nan")


def _pm(pair: tuple[float, float], digits: int) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def _trained_settings(curves: list[RunCurve]) -> str:
    """The budget and evaluation settings the runs were trained with, from their own config.yaml
    (a value that differs between runs is shown as a range)."""
    values: dict[str, list[object]] = {k: [] for k in ("total", "seeds", "n_envs", "episodes", "greedy", "every")}
    for curve in curves:
        try:
            run = validate_config(read_yaml(curve.run.run_dir / "config.yaml"), build_envs=False).runs()[0]
        except ConfigError:
            run = curve.run  # no readable run config: the experiment's values
        values["total"].append(run.train.total_timesteps)
        values["seeds"].append(run.seed)
        values["n_envs"].append(run.env.n_envs)
        values["episodes"].append(run.train.eval_episodes)
        values["greedy"].append(run.train.eval_deterministic)
        values["every"].append(run.train.eval_every)

    def one(key: str) -> str:
        distinct = sorted(set(values[key]), key=str)
        return str(distinct[0]) if len(distinct) == 1 else f"{min(distinct)}–{max(distinct)}"  # type: ignore[type-var]

    greedy = set(values["greedy"])
    mode = "greedy" if greedy == {True} else "sampled" if greedy == {False} else "greedy or sampled"
    return (
        f"{one('total')} env steps per run, seeds {sorted(set(values['seeds']))}, {one('n_envs')} envs; "
        f"evaluation: {one('episodes')} {mode} episodes every {one('every')} steps. Mean ± std over seeds."
    )


def format_markdown(
    config: ExperimentConfig, env: EnvConfig, curves: list[RunCurve], summaries: list[PolicySummary], normalized: bool
) -> str:
    """The comparison table of one env with a heading and a line on the setup; best means in bold."""
    score = "normalized score" if normalized else "return"
    digits = 3 if normalized else 2
    finals, aucs = [s.final_score[0] for s in summaries], [s.auc[0] for s in summaries]
    # bold the best mean, unless every policy has it
    best_final = max(finals) if min(finals) < max(finals) else None
    best_auc = max(aucs) if min(aucs) < max(aucs) else None
    kwargs = ", ".join(f"{k}={v}" for k, v in env.kwargs.items())
    env_text = f"{env.id}" + (f" ({kwargs})" if kwargs else "")
    lines = [
        f"### {config.name}: {' vs '.join(s.label for s in summaries)} on {env_text}",
        "",
        _trained_settings(curves),
        "",
        f"| policy | final {score} | AUC ({score}) |" + (" final return |" if normalized else "") + " env steps/s | seeds |",
        "|---|---|---|" + ("---|" if normalized else "") + "---|---|",
    ]
    for s in summaries:
        final = _pm(s.final_score, digits)
        auc = _pm(s.auc, digits)
        if s.final_score[0] == best_final:
            final = f"**{final}**"
        if s.auc[0] == best_auc:
            auc = f"**{auc}**"
        seeds = f"{len(s.seeds)}" + ("" if s.complete_runs == len(s.seeds) else f" ({s.complete_runs} complete)")
        final_return = f" {_pm(s.final_return, 2)} |" if normalized else ""
        lines.append(f"| {s.label} (`{s.policy}`) | {final} | {auc} |{final_return} {s.steps_per_second:.0f} | {seeds} |")
    incomplete = sorted({c.label for c in curves if c.status != "completed" or c.timesteps[-1] < c.run.train.total_timesteps},
                        key=list(config.policies).index)
    if incomplete:
        lines += ["", f"Incomplete runs ({', '.join(incomplete)}): their last evaluation is used."]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, summaries: list[PolicySummary], normalized: bool) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for s in summaries:
            writer.writerow([
                s.label, s.policy, " ".join(map(str, s.seeds)), "normalized_score" if normalized else "return",
                f"{s.final_score[0]:.6g}", f"{s.final_score[1]:.6g}", f"{s.auc[0]:.6g}", f"{s.auc[1]:.6g}",
                f"{s.final_return[0]:.6g}", f"{s.final_return[1]:.6g}", f"{s.steps_per_second:.6g}",
                s.timesteps, s.complete_runs,
            ])


def plot_learning_curves(config: ExperimentConfig, env: EnvConfig, curves: list[RunCurve], path: Path, normalized: bool) -> None:
    """Mean over seeds per policy with a ± std band, against env steps."""
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.subplots()
    for label in config.policies:
        runs = [c for c in curves if c.label == label]
        if not runs:
            continue
        grid = np.unique(np.concatenate([c.timesteps for c in runs]))
        grid = grid[grid <= min(c.timesteps[-1] for c in runs)]  # where every seed has data
        values = np.stack([np.interp(grid, c.timesteps, c.curve) for c in runs])
        mean, std = values.mean(axis=0), values.std(axis=0)
        (line,) = axes.plot(grid, mean, label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})", linewidth=1.8)
        axes.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xlabel("environment steps")
    axes.set_ylabel("normalized score" if normalized else "episode return")
    if normalized:
        axes.set_ylim(-0.02, 1.02)
    seeds = len(config.train.seeds)
    axes.set_title(f"{config.name}: {env.id} (mean ± std over {seeds} seed{'s' if seeds > 1 else ''})")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.savefig(path, dpi=120)


def final_scores_per_env(curves_by_env: list[list[RunCurve]]) -> list[dict[tuple[str, int], float]]:
    """For each env, ``{(policy label, seed): final normalized score}`` of every evaluated run.

    An env without reference returns is min-max scaled over its runs' final returns (all equal:
    0.5)."""
    finals: list[dict[tuple[str, int], float]] = []
    for curves in curves_by_env:
        if curves and all(c.scores is not None for c in curves):
            finals.append({(c.label, c.seed): float(c.curve[-1]) for c in curves})
            continue
        returns = {(c.label, c.seed): float(c.returns[-1]) for c in curves}
        low, high = (min(returns.values()), max(returns.values())) if returns else (0.0, 0.0)
        finals.append({key: (value - low) / (high - low) if high > low else 0.5 for key, value in returns.items()})
    return finals


def final_scores_over_envs(config: ExperimentConfig, curves_by_env: list[list[RunCurve]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """``scores[policy]``: (n_seeds, n_envs) final normalized scores (:func:`final_scores_per_env`),
    envs in config order, over the seeds the policy has on every env; and notes on what was left
    out."""
    finals = final_scores_per_env(curves_by_env)
    scores, notes = {}, []
    for label in config.policies:
        seeds = [seed for seed in config.train.seeds if all((label, seed) in env_finals for env_finals in finals)]
        if not seeds:
            notes.append(f"{label} is left out of the aggregate: no seed has evaluations on every env")
            continue
        scores[label] = np.array([[env_finals[(label, seed)] for env_finals in finals] for seed in seeds])
    return scores, notes


def _write_aggregate(config: ExperimentConfig, curves_by_env: list[list[RunCurve]], log: Callable[[str], None]) -> tuple[str, list[Path]]:
    """aggregate.md, aggregate.csv and performance_profiles.png; returns the Markdown and the files."""
    scores, notes = final_scores_over_envs(config, curves_by_env)
    for note in notes:
        log(f"note: {note}")
    if not scores:
        return "", []
    baseline = config.report.baseline if config.report.baseline in scores else None
    aggregates = stats.aggregate_scores(scores, baseline=baseline)
    out = config.experiment_dir
    env_names = [config.env_label(env) or env.id for env in config.env_list]
    envs = ", ".join(env_names)
    n_envs = f"{len(env_names)} envs" if len(env_names) > 1 else "1 env"
    n_seeds = sorted({len(s) for s in scores.values()})
    seeds = str(n_seeds[0]) if len(n_seeds) == 1 else f"{n_seeds[0]}–{n_seeds[-1]}"
    text = (
        f"### {config.name}: aggregate over {n_envs}\n\n"
        f"Final normalized score of each run ({seeds} seeds x {n_envs}: {envs}); "
        "IQM = interquartile mean over all runs, 95% stratified-bootstrap confidence intervals"
        + (f", probability of improvement over {baseline}" if baseline else "")
        + " (Agarwal et al., 2021).\n\n"
        + stats.format_aggregate_markdown(aggregates, baseline)
        + "\nPer env: final normalized score, mean over seeds (best in bold)"
        + (f", and on how many envs each policy scores at least {baseline}'s" if baseline else "")
        + ".\n\n"
        + stats.format_per_env_markdown(scores, env_names, [baseline] if baseline else [])
    )
    files = [out / "aggregate.md", out / "aggregate.csv", out / "performance_profiles.png", out / "scores.csv"]
    files[0].write_text(text)
    stats.write_aggregate_csv(aggregates, files[1])
    stats.plot_performance_profiles(scores, files[2], title=f"{config.name}: {n_envs}")
    _write_scores_csv(files[3], env_names, curves_by_env)
    return text, files


def _write_scores_csv(path: Path, env_names: list[str], curves_by_env: list[list[RunCurve]]) -> None:
    """One row per evaluated run (env, policy, seed, final normalized score): the input of the
    aggregate, for recomputing it or feeding it to another statistics tool."""
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["env", "policy", "seed", "final_score"])
        for env_name, finals in zip(env_names, final_scores_per_env(curves_by_env)):
            for (label, seed), score in finals.items():  # config order: policy by policy, seed by seed
                writer.writerow([env_name, label, seed, score])


def write_report(config: ExperimentConfig, log: Callable[[str], None] = print) -> Report:
    """Write the per-env comparisons and, with several envs, the aggregate (see the module doc)."""
    report = Report(text="")
    loaded = [load_curves(config, env) for env in config.env_list]
    if not any(curves for curves, _ in loaded):
        raise ConfigError(f"no evaluated runs under {config.experiment_dir}: run `dream-rl train` first")
    missing = [name for _, names in loaded for name in names]
    if missing:
        log(f"note: no evaluations yet for {', '.join(missing)} (left out of the comparison)")
    tables, curves_by_env = [], [curves for curves, _ in loaded]
    writable_dir(config.experiment_dir, "report", _COPY_HINT)
    for env, curves in zip(config.env_list, curves_by_env):
        if not curves:
            continue
        normalized = all(c.scores is not None for c in curves)
        summaries = summarize(config, curves)
        out = writable_dir(config.env_dir(env), "report", _COPY_HINT)
        table = format_markdown(config, env, curves, summaries, normalized)
        files = [out / "comparison.md", out / "comparison.csv", out / "learning_curves.png"]
        files[0].write_text(table)
        _write_csv(files[1], summaries, normalized)
        plot_learning_curves(config, env, curves, files[2], normalized)
        tables.append(table)
        report.files += files
    if len(config.env_list) > 1 or len(config.train.seeds) >= MIN_SEEDS_FOR_INTERVALS:
        aggregate, files = _write_aggregate(config, curves_by_env, log)
        tables = ([aggregate] if aggregate else []) + tables
        report.files += files
        overview = config.experiment_dir / "comparison.md"
        overview.write_text("\n".join(tables))
        report.files.append(overview)
    report.text = "\n".join(tables)
    return report
