"""The tables of docs/dream-ablations.md from an ablation experiment's outputs.

Reads ``<experiment>/scores.csv`` (every run's final normalized score, written by ``dream-rl report``)
and each DREAM run's TensorBoard scalars ``torso/surprise``, ``torso/tau_eff`` and
``torso/fast_weight_norm`` (logged once per rollout by ``TorsoInternalsCallback``), and prints Markdown:

- per env, each policy's mean score minus the baseline's (``dream``), with a 95% bootstrap interval
  that resamples the seeds of both policies independently;
- per env and DREAM variant, the internals averaged over the last half of training and over seeds.

    python scripts/ablation_tables.py runs/ablations_quick --baseline dream --csv results/ablations_quick/internals.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

TAGS = {"surprise": "torso/surprise", "tau_eff": "torso/tau_eff", "U_norm": "torso/fast_weight_norm"}
REPS = 10_000


def read_scores(experiment: Path) -> dict[str, dict[str, dict[int, float]]]:
    """env -> policy -> seed -> final normalized score."""
    scores: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    with (experiment / "scores.csv").open(newline="") as file:
        for row in csv.DictReader(file):
            scores[row["env"]][row["policy"]][int(row["seed"])] = float(row["final_score"])
    return scores


def delta_interval(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(x) - mean(y) and a 95% percentile-bootstrap interval (seeds of x and y resampled apart)."""
    bx = x[rng.integers(0, len(x), size=(REPS, len(x)))].mean(axis=1)
    by = y[rng.integers(0, len(y), size=(REPS, len(y)))].mean(axis=1)
    low, high = np.percentile(bx - by, [2.5, 97.5])
    return float(x.mean() - y.mean()), float(low), float(high)


def read_internals(run_dir: Path) -> dict[str, float] | None:
    """Each internal's mean over the last half of the run's rollouts (None without the scalars)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for events in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        available = set(accumulator.Tags()["scalars"])
        for name, tag in TAGS.items():
            if tag in available:
                values[name] += [(e.step, e.value) for e in accumulator.Scalars(tag)]
    if not values:
        return None
    result = {}
    for name, points in values.items():
        points.sort()
        last = [v for _, v in points[len(points) // 2:]]
        result[name] = float(np.mean(last))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--baseline", default="dream")
    parser.add_argument("--csv", type=Path, default=None, help="write the internals per run here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    scores = read_scores(args.experiment)
    envs = list(scores)
    policies = list(next(iter(scores.values())))
    print(f"Per env: mean final normalized score minus {args.baseline}'s, [95% bootstrap interval over seeds]\n")
    print("| policy | " + " | ".join(envs) + " |")
    print("|---|" + "---|" * len(envs))
    for policy in policies:
        if policy == args.baseline:
            cells = [f"{np.mean(list(scores[env][policy].values())):.3f} (score)" for env in envs]
        else:
            cells = []
            for env in envs:
                x = np.array(list(scores[env][policy].values()))
                y = np.array(list(scores[env][args.baseline].values()))
                d, low, high = delta_interval(x, y, rng)
                cells.append(f"{d:+.3f} [{low:+.3f}, {high:+.3f}]")
        print(f"| {policy} | " + " | ".join(cells) + " |")

    rows = []
    for env in envs:
        for policy in policies:
            for seed in sorted(scores[env][policy]):
                run_dir = args.experiment / env / policy / f"seed_{seed}"
                internals = read_internals(run_dir)
                if internals is not None:
                    rows.append({"env": env, "policy": policy, "seed": seed, **internals})
    if not rows:
        return 0
    print("\nInternals of the first DREAM layer, mean over the last half of training's rollouts and over seeds"
          " (surprise S, effective time constant τ_eff in steps, fast-weight norm ‖U‖_F)\n")
    print("| policy | " + " | ".join(f"{env} S / τ_eff / ‖U‖" for env in envs) + " |")
    print("|---|" + "---|" * len(envs))
    for policy in dict.fromkeys(r["policy"] for r in rows):
        cells = []
        for env in envs:
            mine = [r for r in rows if r["policy"] == policy and r["env"] == env]
            mean = {k: np.mean([r[k] for r in mine]) for k in TAGS} if mine else None
            cells.append("–" if mean is None else f"{mean['surprise']:.3f} / {mean['tau_eff']:.2f} / {mean['U_norm']:.3f}")
        print(f"| {policy} | " + " | ".join(cells) + " |")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["env", "policy", "seed", *TAGS])
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
