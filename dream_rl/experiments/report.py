"""Compare the policies of an experiment: a Markdown and CSV table and a learning-curve plot.

Per run (policy, seed), from its ``eval.csv`` and ``run_info.json``:

- **final score**: the last evaluation's mean normalized score (``dream_rl.envs.normalized_score``,
  0 = a random/trivial policy, 1 = solved) or, for an env without a normalizer, its mean return;
- **AUC**: the area under the learning curve (score against env steps, trapezoids) divided by the
  steps spanned, i.e. the average score over training (rewards learning early, not only well);
- **env steps/s**: training throughput (rollouts + updates, evaluations and checkpoints excluded).

Per policy the table shows mean ± std over seeds (``np.std``, ddof 0). The plot shows, per policy,
the mean score over seeds against env steps with a band of ± one std (curves are interpolated
onto a common grid of evaluation steps first).

Outputs in ``<output_dir>/<name>/``: ``comparison.md``, ``comparison.csv``, ``learning_curves.png``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, writes PNGs through Agg

from dream_rl.experiments.config import ConfigError, ExperimentConfig
from dream_rl.experiments.runner import read_run_info

__all__ = ["PolicySummary", "ReportPaths", "RunCurve", "area_under_curve", "load_curves", "summarize", "write_report"]

CSV_COLUMNS = (
    "policy", "class", "seeds", "score", "final_score_mean", "final_score_std", "auc_mean", "auc_std",
    "final_return_mean", "final_return_std", "steps_per_second_mean", "timesteps", "complete_runs",
)


@dataclass
class RunCurve:
    """The evaluation record of one run."""

    label: str
    seed: int
    timesteps: np.ndarray
    returns: np.ndarray
    scores: np.ndarray | None  # normalized scores, None when the env has no normalizer
    steps_per_second: float
    status: str

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
class ReportPaths:
    markdown: Path
    csv: Path
    plot: Path
    text: str  # the Markdown table


def area_under_curve(timesteps: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``timesteps``, divided by the steps spanned."""
    if len(timesteps) < 2 or timesteps[-1] == timesteps[0]:
        return float(values[-1])
    area = np.sum((values[1:] + values[:-1]) / 2.0 * np.diff(timesteps))
    return float(area / (timesteps[-1] - timesteps[0]))


def load_curves(config: ExperimentConfig) -> tuple[list[RunCurve], list[str]]:
    """The runs of ``config`` that have evaluations, and the names of those that have none."""
    curves, missing = [], []
    for label, seed in config.runs():
        run_dir = config.run_dir(label, seed)
        record = run_dir / "eval.csv"
        rows = []
        if record.exists():
            with record.open(newline="") as file:
                rows = list(csv.DictReader(file))
        if not rows:
            missing.append(f"{label}/seed_{seed}")
            continue
        info = read_run_info(run_dir)
        has_scores = all(row["mean_score"] != "" for row in rows)
        curves.append(
            RunCurve(
                label=label,
                seed=seed,
                timesteps=np.array([int(row["timesteps"]) for row in rows], dtype=float),
                returns=np.array([float(row["mean_return"]) for row in rows]),
                scores=np.array([float(row["mean_score"]) for row in rows]) if has_scores else None,
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
                steps_per_second=float(np.nanmean([c.steps_per_second for c in runs])),
                timesteps=int(min(c.timesteps[-1] for c in runs)),
                complete_runs=sum(c.status == "completed" for c in runs),
            )
        )
    return summaries


def _pm(pair: tuple[float, float], digits: int) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def format_markdown(config: ExperimentConfig, summaries: list[PolicySummary], normalized: bool) -> str:
    """The comparison table with a heading and a line on the setup; best means in bold."""
    score = "normalized score" if normalized else "return"
    digits = 3 if normalized else 2
    finals, aucs = [s.final_score[0] for s in summaries], [s.auc[0] for s in summaries]
    # bold the best mean, unless every policy has it
    best_final = max(finals) if min(finals) < max(finals) else None
    best_auc = max(aucs) if min(aucs) < max(aucs) else None
    kwargs = ", ".join(f"{k}={v}" for k, v in config.env.kwargs.items())
    env = f"{config.env.id}" + (f" ({kwargs})" if kwargs else "")
    train = config.train
    lines = [
        f"### {config.name}: {' vs '.join(s.label for s in summaries)} on {env}",
        "",
        f"{train.total_timesteps} env steps per run, seeds {train.seeds}, {config.env.n_envs} envs; "
        f"evaluation: {train.eval_episodes} {'greedy' if train.eval_deterministic else 'sampled'} "
        f"episodes every {train.eval_every} steps. Mean ± std over seeds.",
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
    incomplete = [s.label for s in summaries if s.complete_runs < len(s.seeds) or s.timesteps < train.total_timesteps]
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


def plot_learning_curves(config: ExperimentConfig, curves: list[RunCurve], path: Path, normalized: bool) -> None:
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
    axes.set_title(f"{config.name}: {config.env.id} (mean ± std over {seeds} seed{'s' if seeds > 1 else ''})")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.savefig(path, dpi=120)


def write_report(config: ExperimentConfig, log=print) -> ReportPaths:
    """Write comparison.md, comparison.csv and learning_curves.png; return their paths and the table."""
    curves, missing = load_curves(config)
    if not curves:
        raise ConfigError(f"no evaluated runs under {config.experiment_dir}: run `dream-rl train` first")
    if missing:
        log(f"note: no evaluations yet for {', '.join(missing)} (left out of the comparison)")
    normalized = all(c.scores is not None for c in curves)
    summaries = summarize(config, curves)
    out = config.experiment_dir
    paths = ReportPaths(out / "comparison.md", out / "comparison.csv", out / "learning_curves.png", "")
    paths.text = format_markdown(config, summaries, normalized)
    paths.markdown.write_text(paths.text)
    _write_csv(paths.csv, summaries, normalized)
    plot_learning_curves(config, curves, paths.plot, normalized)
    return paths
