"""Does a trained DREAM policy adapt *during* an episode? Evaluate it with and without its plasticity.

For every DREAM run under the given directories (``<policy>/seed_<k>/`` with a ``final_model.zip``), the
trained policy plays the same evaluation episodes twice, from the same env seeds: as trained, and inside
:func:`dream_rl.dream.plasticity.frozen_plasticity` (the fast weights are not written, ``η = 0``, in
evaluation only; training is untouched). If the fast weights carry in-episode adaptation, freezing
them costs return.

Per run it prints and writes (CSV) the mean normalized score of each condition with a 95% bootstrap
interval over episodes, and the paired difference (frozen - plastic) with its interval; a last row
per env and policy pools its runs (episodes resampled within each run).

    python scripts/frozen_plasticity.py runs/ablations_quick/SwitchingBandit-v0/dream \\
        runs/ablations_quick/MetaBandit-v0/dream --episodes 200 --csv results/ablations_quick/frozen_plasticity.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.evaluation import evaluate_policy

from dream_rl.dream.plasticity import dream_cells, frozen_plasticity
from dream_rl.experiments.config import read_yaml, validate_config
from dream_rl.experiments.runner import find_run_dirs, make_vec_env, normalizer

REPS = 10_000


def evaluate(run_dir: Path, episodes: int, seed: int, frozen: bool, stochastic: bool = False) -> np.ndarray:
    """Normalized score (or return) of each of ``episodes`` episodes, in episode order, with the run's own
    evaluation mode (``train.eval_deterministic``: greedy by default) or sampled actions (``stochastic``)."""
    run = validate_config(read_yaml(run_dir / "config.yaml")).runs()[0]
    env = make_vec_env(run.env, 1, seed=seed)  # one env: the episodes come back in a fixed order
    try:
        model = RecurrentPPO.load(run_dir / "final_model.zip", env=env, device="cpu")
        model.set_random_seed(seed)
        if not dream_cells(model):
            raise SystemExit(f"{run_dir}: not a DREAM policy")
        with frozen_plasticity(model) if frozen else contextlib.nullcontext():
            greedy = run.train.eval_deterministic and not stochastic
            returns, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=greedy,
                                         return_episode_rewards=True, warn=False)
    finally:
        env.close()
    score = normalizer(run.env.id)
    return np.array([score(r) if score is not None else r for r in returns])


def interval(groups: list[np.ndarray], rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean over all values and a 95% percentile-bootstrap interval, resampling within each group."""
    means = np.zeros(REPS)
    total = sum(len(g) for g in groups)
    for g in groups:
        means += g[rng.integers(0, len(g), size=(REPS, len(g)))].sum(axis=1)
    means /= total
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.concatenate(groups).mean()), float(low), float(high)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories or folders holding them")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation envs (both conditions)")
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument("--stochastic", action="store_true", help="sample actions (both conditions, same seeds)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows, pooled = [], {}
    for run_dir in [d for path in args.dirs for d in find_run_dirs(path)]:
        plastic = evaluate(run_dir, args.episodes, args.seed, frozen=False, stochastic=args.stochastic)
        frozen = evaluate(run_dir, args.episodes, args.seed, frozen=True, stochastic=args.stochastic)
        env, policy = run_dir.parent.parent.name, run_dir.parent.name
        pooled.setdefault((env, policy), []).append((plastic, frozen))
        rows.append(_row(env, policy, run_dir.name, [plastic], [frozen], rng, args.stochastic))
        print(_line(rows[-1]), flush=True)
    for (env, policy), pairs in pooled.items():
        rows.append(_row(env, policy, "pooled", [p for p, _ in pairs], [f for _, f in pairs], rng, args.stochastic))
        print(_line(rows[-1]), flush=True)
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


def _row(env: str, policy: str, run: str, plastic: list[np.ndarray], frozen: list[np.ndarray],
         rng: np.random.Generator, stochastic: bool) -> dict:
    p, f = interval(plastic, rng), interval(frozen, rng)
    d = interval([b - a for a, b in zip(plastic, frozen)], rng)  # paired: the same env seeds, episode by episode
    return {"env": env, "policy": policy, "run": run, "actions": "sampled" if stochastic else "greedy",
            "episodes": sum(len(g) for g in plastic),
            "plastic": p[0], "plastic_low": p[1], "plastic_high": p[2],
            "frozen": f[0], "frozen_low": f[1], "frozen_high": f[2],
            "frozen_minus_plastic": d[0], "diff_low": d[1], "diff_high": d[2]}


def _line(row: dict) -> str:
    return (f"{row['env']} {row['policy']} {row['run']} ({row['actions']}): "
            f"plastic {row['plastic']:.3f} [{row['plastic_low']:.3f}, {row['plastic_high']:.3f}]"
            f"  frozen {row['frozen']:.3f} [{row['frozen_low']:.3f}, {row['frozen_high']:.3f}]"
            f"  frozen - plastic {row['frozen_minus_plastic']:+.3f} [{row['diff_low']:+.3f}, {row['diff_high']:+.3f}]"
            f"  ({row['episodes']} episodes)")


if __name__ == "__main__":
    sys.exit(main())
