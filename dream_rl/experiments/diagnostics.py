"""Memory diagnostics over results CSVs: the observability gap and the memory length.

Both read per-run final scores (the final evaluation's mean normalized score), from experiment folders
(each run's ``eval.csv``, as ``dream-rl report`` reads them) or from the ``scores.csv`` that the report
writes (``env, policy, seed, final_score``), and build nothing: no env, no model.
:func:`write_diagnostics` writes the tables and figures; the functions before it compute them.

**Observability gap** (POPGym Arcade's fully observable twins). Each suite env has a fully observable
twin (``dream_rl/<Name>FullObs-v0``, :data:`dream_rl.envs.TWINS`) whose observation adds what a memory
would supply. Per env, the memoryless policy (``mlp``, the baseline) is scored on both: its score on
the twin ``M_twin`` is what the task allows without memory once the information is given, its score on
the partially observable task ``M_pomdp`` what it allows without memory at all; the gap is
``M_twin - M_pomdp``. A memory torso's score ``T`` on the partially observable task then recovers the
share ``(T - M_pomdp) / (M_twin - M_pomdp)`` of the gap: 0 = no better than no memory, 1 = as good as
being shown the hidden information (above 1: better than the memoryless policy on the twin, e.g.
when the twin's larger observation is slower to learn). An env has a *measurable* gap when the gap is
at least ``min_gap`` (default 0.1 of the normalized scale) and its bootstrap interval lies above 0; the
other envs are left out of the shares (a share of a gap that may be 0 can be anything).

Shares are computed per run (each seed of the torso against the memoryless means of that env) and
aggregated over all runs of all envs with a gap: the IQM and the mean of the per-env means, with
stratified-bootstrap intervals (:mod:`dream_rl.experiments.stats`, Agarwal et al. 2021) that resample,
within each env, the seeds of the torso *and* of both memoryless references; a replicate's gap below
``min_gap`` counts as ``min_gap`` so that no replicate divides by (almost) zero.

**Memory length** (Ni et al. 2023's passive T-maze). Runs on env labels ``TMaze-L<length>`` (corridor
length ``<length>``; :func:`corridor_length`) give, per torso and length, the success rate (the T-maze's
normalized score is the fraction of evaluation episodes that turn towards the cue). A torso *solves* a
length when its success, mean over seeds, is at least ``threshold`` (0.9); the table gives the longest
length solved, and marks a torso that failed a shorter length (not monotone: luck or budget, not
memory reach).

Outputs of :func:`write_diagnostics`: ``diagnostics.md`` (every table), ``gap.csv``, ``recovered.csv``
(per torso and env), ``recovered_aggregate.csv``, ``gap.png``, ``memory_length.csv``,
``memory_length_summary.csv``, ``memory_length.png``, each only where the scores hold that diagnostic, and
``scores.csv``, every run read (their input: ``write_diagnostics([".../scores.csv"], ...)`` recomputes them).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, writes PNGs through Agg

from dream_rl.errors import ConfigError
from dream_rl.experiments import stats

__all__ = [
    "DiagnosticsReport",
    "EnvGap",
    "LengthResult",
    "RecoveredShare",
    "Scores",
    "corridor_length",
    "format_gap_markdown",
    "format_memory_length_markdown",
    "longest_solved",
    "memory_length_results",
    "observability_gaps",
    "read_scores",
    "recovered_shares",
    "twin_label",
    "write_diagnostics",
]

TWIN_SUFFIX = "FullObs"  # as dream_rl.envs.scores.TWIN_SUFFIX (not imported: this module reads CSVs only)
SCORE_COLUMNS = ("env", "policy", "seed", "final_score")

# env label -> policy -> seed -> final normalized score
Scores = dict[str, dict[str, dict[int, float]]]


# --------------------------------------------------------------------------------------------- input


def _scores_file(source: Path) -> Path:
    path = Path(source)
    if path.is_dir():
        path = path / "scores.csv"
    if not path.is_file():
        raise ConfigError(f"{source}: neither an experiment folder (config.yaml) nor a scores.csv; give an "
                          "experiment folder (<output_dir>/<name>/), a results folder holding scores.csv, or the file")
    return path


def _experiment_rows(folder: Path) -> list[tuple[str, str, int, float]]:
    """(env label, policy, seed, final score) of every evaluated run of an experiment folder, read as
    ``dream-rl report`` reads it (its config.yaml as data, each run's eval.csv): the runs finished so
    far count, even before every run has finished."""
    from dream_rl.experiments.config import load_config
    from dream_rl.experiments.report import final_scores_per_env, load_curves

    config = load_config(folder / "config.yaml", build_envs=False)
    curves = [load_curves(config, env)[0] for env in config.env_list]
    labels = [env.label or env.id for env in config.env_list]
    return [(label, policy, seed, score) for label, finals in zip(labels, final_scores_per_env(curves))
            for (policy, seed), score in finals.items()]


def _csv_rows(path: Path) -> list[tuple[str, str, int, float]]:
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            missing = [c for c in SCORE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: not a scores.csv written by dream-rl report (no column {missing[0]!r})")
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: cannot read it ({type(error).__name__})") from None
    rows = []
    for line, row in enumerate(raw, start=2):
        try:
            seed, score = int(row["seed"]), float(row["final_score"])
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: line {line}: seed {row.get('seed')!r} or final_score "
                              f"{row.get('final_score')!r} is not a number") from None
        if not math.isfinite(score):
            raise ConfigError(f"{path}: line {line}: final_score is {row['final_score']!r}, not a finite number")
        rows.append((row["env"], row["policy"], seed, score))
    return rows


def read_scores(sources: Iterable[Path | str]) -> tuple[Scores, list[str]]:
    """Every run's final score from ``sources``, and notes on what was skipped. A source is an
    experiment folder (``<output_dir>/<name>/`` with its ``config.yaml``: every run evaluated so far),
    a folder holding a ``scores.csv`` (``results/leaderboard/``) or such a file. A run (env, policy,
    seed) found in several sources keeps the score of the first source that has it.

    Raises :class:`ConfigError` naming the file and line for a file that is not a scores CSV."""
    scores: Scores = {}
    notes: list[str] = []
    for source in sources:
        source = Path(source)
        if (source / "config.yaml").is_file():
            rows = _experiment_rows(source)
        else:
            rows = _csv_rows(_scores_file(source))
        duplicates = 0
        for env, policy, seed, score in rows:
            runs = scores.setdefault(env, {}).setdefault(policy, {})
            if seed in runs:
                duplicates += 1
                continue
            runs[seed] = score
        if duplicates:
            notes.append(f"{source}: {duplicates} runs already read from an earlier source were skipped")
    if not scores:
        raise ConfigError("no runs in " + ", ".join(str(s) for s in sources) + ": train and report first")
    return scores, notes


# --------------------------------------------------------------------------------- observability gap


def twin_label(label: str) -> str:
    """The env label of ``label``'s fully observable twin: ``CartPoleNoVel-v0`` -> ``CartPoleNoVelFullObs-v0``
    (the default labels of ``dream_rl/<Name>-v0`` and ``dream_rl/<Name>FullObs-v0``)."""
    name, dash, version = label.rpartition("-v")
    if not dash or not version.isdigit():
        return f"{label}{TWIN_SUFFIX}"
    return f"{name}{TWIN_SUFFIX}-v{version}"


def _array(runs: Mapping[int, float]) -> np.ndarray:
    return np.array([runs[seed] for seed in sorted(runs)], dtype=float)


def _resampled_means(values: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``(reps,)`` means of ``values`` resampled with replacement (its seeds: one stratum)."""
    return values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)


@dataclass(frozen=True)
class EnvGap:
    """The memoryless policy's scores on one env and on its twin (means over seeds, bootstrap intervals)."""

    env: str
    twin: str
    twin_score: float
    twin_ci: tuple[float, float]
    pomdp_score: float
    pomdp_ci: tuple[float, float]
    gap: float
    gap_ci: tuple[float, float]
    twin_seeds: int
    pomdp_seeds: int
    # bootstrap replicates of the two means, kept for the shares' intervals (same draws: coherent)
    twin_reps: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))
    pomdp_reps: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))

    def measured(self, min_gap: float = 0.1) -> bool:
        """Whether the gap is at least ``min_gap`` and its interval lies above 0."""
        return self.gap >= min_gap and self.gap_ci[0] > 0


def observability_gaps(
    scores: Scores, baseline: str = "mlp", reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> list[EnvGap]:
    """Per env that has ``baseline`` runs on it and on its twin (:func:`twin_label`), in the order of
    ``scores``: both means, the gap, and percentile intervals from resampling each side's seeds."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")
    gaps = []
    for env, policies in scores.items():
        twin = twin_label(env)
        pomdp_runs, twin_runs = policies.get(baseline), scores.get(twin, {}).get(baseline)
        if env.removesuffix("-v0").endswith(TWIN_SUFFIX) or not pomdp_runs or not twin_runs:
            continue
        twin_values, pomdp_values = _array(twin_runs), _array(pomdp_runs)
        twin_reps = _resampled_means(twin_values, reps, stats.named_rng(seed, baseline, twin))
        pomdp_reps = _resampled_means(pomdp_values, reps, stats.named_rng(seed, baseline, env))
        gaps.append(EnvGap(
            env=env, twin=twin,
            twin_score=float(twin_values.mean()), twin_ci=stats.percentile_interval(twin_reps, confidence),
            pomdp_score=float(pomdp_values.mean()), pomdp_ci=stats.percentile_interval(pomdp_reps, confidence),
            gap=float(twin_values.mean() - pomdp_values.mean()), gap_ci=stats.percentile_interval(twin_reps - pomdp_reps, confidence),
            twin_seeds=len(twin_values), pomdp_seeds=len(pomdp_values), twin_reps=twin_reps, pomdp_reps=pomdp_reps,
        ))
    return gaps


@dataclass(frozen=True)
class RecoveredShare:
    """One torso's share of the gap recovered: per env (mean over its seeds) and aggregated over the
    runs of every env with a gap that it has runs on (IQM of the runs' shares and mean of the per-env
    means, with stratified-bootstrap intervals)."""

    policy: str
    per_env: dict[str, float]
    seeds: dict[str, int]
    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]

    @property
    def envs(self) -> list[str]:
        return list(self.per_env)


def recovered_shares(
    scores: Scores,
    gaps: Sequence[EnvGap],
    policies: Sequence[str] | None = None,
    baseline: str = "mlp",
    min_gap: float = 0.1,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[RecoveredShare]:
    """The share ``(T - M_pomdp) / (M_twin - M_pomdp)`` of each policy (default: every policy with runs
    on an env with a gap, but the baseline), over the envs of ``gaps`` with a measurable gap
    (:meth:`EnvGap.measured`).

    The intervals reuse the gaps' bootstrap replicates of the two memoryless means (so ``reps`` is
    theirs) and resample the torso's seeds within each env alongside."""
    if not min_gap > 0:
        raise ConfigError(f"min_gap must be > 0, got {min_gap}")
    measured = [g for g in gaps if g.measured(min_gap)]
    if policies is None:
        names = [p for g in measured for p in scores[g.env] if p != baseline]
        policies = list(dict.fromkeys(names))
    results = []
    for policy in policies:
        envs = [g for g in measured if scores[g.env].get(policy)]
        if not envs:
            continue
        per_run, per_env_reps, per_run_reps = [], [], []
        per_env, seeds = {}, {}
        for g in envs:
            values = _array(scores[g.env][policy])
            share = (values - g.pomdp_score) / g.gap
            per_env[g.env], seeds[g.env] = float(share.mean()), len(values)
            per_run.append(share)
            reps = len(g.twin_reps)
            resampled = values[stats.named_rng(seed, policy, g.env).integers(0, len(values), size=(reps, len(values)))]
            denominator = np.maximum(g.twin_reps - g.pomdp_reps, min_gap)[:, None]
            replicate_shares = (resampled - g.pomdp_reps[:, None]) / denominator  # (reps, seeds of this env)
            per_run_reps.append(replicate_shares)
            per_env_reps.append(replicate_shares.mean(axis=1))
        runs = np.concatenate(per_run)
        run_reps = np.concatenate(per_run_reps, axis=1)  # (reps, every run of every env)
        env_mean_reps = np.stack(per_env_reps, axis=1).mean(axis=1)
        results.append(RecoveredShare(
            policy=policy, per_env=per_env, seeds=seeds,
            iqm=float(stats.iqm(runs[:, None])), iqm_ci=stats.percentile_interval(stats.iqm(run_reps[..., None]), confidence),
            mean=float(np.mean(list(per_env.values()))), mean_ci=stats.percentile_interval(env_mean_reps, confidence),
        ))
    return results


def _ci(value: float, interval: tuple[float, float], digits: int = 2) -> str:
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def format_gap_markdown(
    gaps: Sequence[EnvGap], shares: Sequence[RecoveredShare], baseline: str = "mlp", min_gap: float = 0.1,
    confidence: float = 0.95,
) -> str:
    """Three Markdown tables: the gap per env, the shares aggregated per torso (highest IQM first),
    and the shares per torso and env."""
    ci = f"{confidence:.0%} CI"
    lines = [
        f"Memoryless policy `{baseline}`: final normalized score on each env's fully observable twin and on the "
        f"env itself, mean over seeds [{ci}, bootstrap over seeds]; gap = twin − env. Envs with a gap below "
        f"{min_gap:g} or whose interval reaches 0 have no measurable gap (no share is computed there).",
        "",
        f"| env | {baseline} on the twin | {baseline} on the env | gap | seeds (twin / env) |",
        "|---|---:|---:|---:|---:|",
    ]
    for g in gaps:
        gap = _ci(g.gap, g.gap_ci) + ("" if g.measured(min_gap) else " (not measurable)")
        lines.append(f"| {g.env} | {_ci(g.twin_score, g.twin_ci)} | {_ci(g.pomdp_score, g.pomdp_ci)} | {gap} "
                     f"| {g.twin_seeds} / {g.pomdp_seeds} |")
    measured = [g.env for g in gaps if g.measured(min_gap)]
    if not shares:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "Share of the gap each torso recovers on the partially observable envs, (torso − "
        f"{baseline} on the env) / gap: IQM over all runs and mean of the per-env means [{ci}, stratified "
        "bootstrap over the seeds of the torso and of both memoryless references]; 0 = no better than no "
        "memory, 1 = as good as being shown the hidden information. Overlapping intervals are ties.",
        "",
        "| torso | IQM share | mean share | envs |",
        "|---|---:|---:|---:|",
    ]
    for s in sorted(shares, key=lambda s: -s.iqm):
        lines.append(f"| {s.policy} | {_ci(s.iqm, s.iqm_ci)} | {_ci(s.mean, s.mean_ci)} | {len(s.per_env)} / {len(measured)} |")
    lines += ["", "Share of the gap per env (mean over seeds; blank: no runs).", "",
              "| torso | " + " | ".join(measured) + " |", "|---|" + "---:|" * len(measured)]
    for s in shares:
        cells = [f"{s.per_env[env]:.2f}" if env in s.per_env else "" for env in measured]
        lines.append(f"| {s.policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ memory length


_LENGTH_LABEL = re.compile(r"-L(\d+)$")


def corridor_length(label: str) -> int | None:
    """The corridor length named by an env label ``<name>-L<length>`` (``TMaze-L20`` -> 20), else None."""
    match = _LENGTH_LABEL.search(label)
    return int(match.group(1)) if match else None


def longest_solved(success: Mapping[int, float], threshold: float = 0.9) -> tuple[int | None, int | None]:
    """The longest length whose success is at least ``threshold`` (None: none), and the shortest length
    below it (None: none failed). ``success``: length -> mean success over seeds."""
    solved = [length for length, value in success.items() if value >= threshold]
    failed = [length for length, value in success.items() if value < threshold]
    return (max(solved) if solved else None), (min(failed) if failed else None)


@dataclass(frozen=True)
class LengthResult:
    """One torso's T-maze success per corridor length (mean over seeds; the seeds' own values too)."""

    policy: str
    success: dict[int, float]
    runs: dict[int, tuple[float, ...]]
    longest_solved: int | None
    first_failed: int | None

    @property
    def monotone(self) -> bool:
        """Every length up to the longest solved is solved."""
        return self.longest_solved is None or self.first_failed is None or self.first_failed > self.longest_solved


def memory_length_results(scores: Scores, threshold: float = 0.9) -> list[LengthResult]:
    """Per policy with runs on ``*-L<length>`` env labels: success per length and the longest solved."""
    if not 0 < threshold <= 1:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    by_policy: dict[str, dict[int, tuple[float, ...]]] = {}
    for env, policies in scores.items():
        length = corridor_length(env)
        if length is None:
            continue
        for policy, runs in policies.items():
            by_policy.setdefault(policy, {})[length] = tuple(_array(runs))
    results = []
    for policy, runs in by_policy.items():
        runs = dict(sorted(runs.items()))
        success = {length: float(np.mean(values)) for length, values in runs.items()}
        best, first_failed = longest_solved(success, threshold)
        results.append(LengthResult(policy, success, runs, best, first_failed))
    return results


def format_memory_length_markdown(results: Sequence[LengthResult], threshold: float = 0.9) -> str:
    """A Markdown table: success per corridor length (mean over seeds, blank: not run) and the longest
    length solved (``*``: a shorter length was failed)."""
    lengths = sorted({length for r in results for length in r.success})
    lines = [
        f"T-maze success rate per corridor length (mean over seeds; blank: not run); solved = at least "
        f"{threshold:g}. `*`: a shorter length was not solved.",
        "",
        "| torso | " + " | ".join(f"L = {length}" for length in lengths) + " | longest solved |",
        "|---|" + "---:|" * (len(lengths) + 1),
    ]
    for r in results:
        cells = [f"{r.success[length]:.2f} ({len(r.runs[length])})" if length in r.success else "" for length in lengths]
        if r.longest_solved is None:
            best = f"none (< {min(r.success)})"
        else:
            best = f"{r.longest_solved}" + ("" if r.monotone else "*")
        lines.append(f"| {r.policy} | " + " | ".join(cells) + f" | {best} |")
    lines += ["", "In brackets: seeds."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- figures


def plot_gap(gaps: Sequence[EnvGap], shares: Sequence[RecoveredShare], path: Path, baseline: str = "mlp",
             min_gap: float = 0.1) -> None:
    """Left: the memoryless policy on each env and on its twin (intervals as bars). Right: each torso's
    IQM share of the gap with its interval."""
    figure = Figure(figsize=(11, max(3.5, 0.32 * max(len(gaps), len(shares)) + 1.5)), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    rows = np.arange(len(gaps))[::-1]
    for y, g in zip(rows, gaps):
        left.plot([g.pomdp_score, g.twin_score], [y, y], color="0.7", linewidth=3, zorder=1)
    for label, color, values, intervals in (
        (f"{baseline} on the env", "tab:red", [g.pomdp_score for g in gaps], [g.pomdp_ci for g in gaps]),
        (f"{baseline} on the twin", "tab:blue", [g.twin_score for g in gaps], [g.twin_ci for g in gaps]),
    ):
        error = np.abs(np.array(intervals).T - np.array(values))
        left.errorbar(values, rows, xerr=error, fmt="o", color=color, label=label, capsize=3, zorder=2)
    left.set_yticks(rows, [g.env + ("" if g.measured(min_gap) else " (not measurable)") for g in gaps], fontsize="small")
    left.set_xlim(-0.05, 1.05)
    left.set_xlabel("final normalized score (mean over seeds)")
    left.set_title("observability gap of the memoryless policy")
    left.grid(axis="x", alpha=0.3)
    left.legend(loc="lower left", fontsize="small")
    ordered = sorted(shares, key=lambda s: s.iqm)
    y = np.arange(len(ordered))
    if ordered:
        error = np.abs(np.array([s.iqm_ci for s in ordered]).T - np.array([s.iqm for s in ordered]))
        right.barh(y, [s.iqm for s in ordered], xerr=error, color="tab:green", alpha=0.7, capsize=3)
        right.set_yticks(y, [s.policy for s in ordered], fontsize="small")
    for x in (0.0, 1.0):
        right.axvline(x, color="0.4", linewidth=1, linestyle="--")
    right.set_xlabel("share of the gap recovered (IQM over runs, 95% CI)")
    right.set_title("share of the gap each torso recovers")
    right.grid(axis="x", alpha=0.3)
    figure.savefig(path, dpi=120)


def plot_memory_length(results: Sequence[LengthResult], path: Path, threshold: float = 0.9) -> None:
    """Success against corridor length (log scale) per torso: mean over seeds, the seeds as dots."""
    figure = Figure(figsize=(9, 4.2), layout="constrained")
    axes = figure.subplots()
    for r in results:
        lengths = list(r.success)
        (line,) = axes.plot(lengths, [r.success[length] for length in lengths], marker="o", linewidth=1.8,
                            label=f"{r.policy} (longest solved: {r.longest_solved if r.longest_solved else 'none'})")
        for length, values in r.runs.items():
            axes.scatter([length] * len(values), values, color=line.get_color(), alpha=0.35, s=14)
    axes.axhline(threshold, color="0.3", linestyle="--", linewidth=1, label=f"solved ({threshold:g})")
    axes.axhline(0.5, color="0.6", linestyle=":", linewidth=1, label="chance, in expectation (0.5)")
    axes.set_xscale("log")
    lengths = sorted({length for r in results for length in r.success})
    axes.set_xticks(lengths, [str(length) for length in lengths])
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("corridor length (steps from the cue to the junction)")
    axes.set_ylabel("success rate (final evaluation)")
    axes.set_title("passive T-maze: how far back each memory recalls")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside: points reach every corner
    figure.savefig(path, dpi=120)


# -------------------------------------------------------------------------------------------- output


@dataclass
class DiagnosticsReport:
    text: str
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in row] for row in rows])
    return path


def write_diagnostics(
    sources: Sequence[Path | str],
    out_dir: Path | str,
    baseline: str = "mlp",
    min_gap: float = 0.1,
    threshold: float = 0.9,
    reps: int = 2000,
    seed: int = 0,
) -> DiagnosticsReport:
    """Read the runs' final scores from ``sources`` (``scores.csv`` files or the results folders that hold
    them; the first file that has a run wins) and write the diagnostics they support into ``out_dir``
    (see the module doc). Raises :class:`ConfigError` when they support neither."""
    from dream_rl.experiments.records import writable_dir

    scores, notes = read_scores(sources)
    out = writable_dir(Path(out_dir), "out_dir")
    report = DiagnosticsReport(text="", notes=notes)
    sections = []
    gaps = observability_gaps(scores, baseline=baseline, reps=reps, seed=seed)
    if gaps:
        shares = recovered_shares(scores, gaps, baseline=baseline, min_gap=min_gap, seed=seed)
        sections.append("## Observability gap\n\n" + format_gap_markdown(gaps, shares, baseline, min_gap))
        report.files.append(_write_rows(out / "gap.csv", (
            "env", "twin", "twin_score", "twin_low", "twin_high", "pomdp_score", "pomdp_low", "pomdp_high",
            "gap", "gap_low", "gap_high", "twin_seeds", "pomdp_seeds", "measured"),
            [(g.env, g.twin, g.twin_score, *g.twin_ci, g.pomdp_score, *g.pomdp_ci, g.gap, *g.gap_ci,
              g.twin_seeds, g.pomdp_seeds, int(g.measured(min_gap))) for g in gaps]))
        report.files.append(_write_rows(out / "recovered.csv", ("policy", "env", "share", "seeds"),
                                        [(s.policy, env, value, s.seeds[env]) for s in shares for env, value in s.per_env.items()]))
        report.files.append(_write_rows(out / "recovered_aggregate.csv",
                                        ("policy", "iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high", "envs"),
                                        [(s.policy, s.iqm, *s.iqm_ci, s.mean, *s.mean_ci, len(s.per_env)) for s in shares]))
        plot_gap(gaps, shares, out / "gap.png", baseline, min_gap)
        report.files.append(out / "gap.png")
    lengths = memory_length_results(scores, threshold)
    if lengths:
        sections.append("## Memory length\n\n" + format_memory_length_markdown(lengths, threshold))
        report.files.append(_write_rows(out / "memory_length.csv", ("policy", "length", "success", "seeds", "runs"),
                                        [(r.policy, length, r.success[length], len(r.runs[length]),
                                          " ".join(f"{v:.4g}" for v in r.runs[length])) for r in lengths for length in r.success]))
        report.files.append(_write_rows(out / "memory_length_summary.csv",
                                        ("policy", "longest_solved", "first_failed", "monotone", "threshold"),
                                        [(r.policy, r.longest_solved if r.longest_solved is not None else "",
                                          r.first_failed if r.first_failed is not None else "", int(r.monotone), threshold)
                                         for r in lengths]))
        plot_memory_length(lengths, out / "memory_length.png", threshold)
        report.files.append(out / "memory_length.png")
    if not sections:
        raise ConfigError(
            f"no diagnostics in these scores: the gap needs {baseline!r} runs on an env and on its twin "
            f"(<Name>{TWIN_SUFFIX}-v0), the memory length runs on env labels <name>-L<length>")
    report.text = "\n".join(sections)
    (out / "diagnostics.md").write_text("# Memory diagnostics\n\n" + report.text)
    report.files.insert(0, out / "diagnostics.md")
    # every run read: the tables' input, from which they can be recomputed (write_diagnostics([scores.csv], ...))
    report.files.append(_write_rows(out / "scores.csv", SCORE_COLUMNS, [
        (env, policy, seed, repr(score)) for env, policies in scores.items() for policy, runs in policies.items()
        for seed, score in runs.items()]))
    return report
