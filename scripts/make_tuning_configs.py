"""Equal-budget tuning of every torso: one tune config per torso, and the tuned full board from their studies.

The protocol (docs/tuning.md, "Equal-budget tuning of every torso"):

1. Every registered torso is tuned alone on the quick board's envs, PPO settings and budgets
   (``scripts/make_leaderboard_configs.py``), on the tuning seeds 100-101 (the quick board runs 0-1 and the
   full board 0-4: no seed that scores a board chooses its settings). Its space is the learning-rate multiple
   (``policies.<torso>.learning_rate_scale``, the same log range for every torso) and the options the
   torso declares in its own file (``RecurrentTorso.search_space``, at most three), under
   ``policies.<torso>.policy_kwargs.torso_kwargs``. Every torso gets the same number of trials (``TRIALS``),
   whatever the size of its space, and each trial trains every env and seed to its full budget (no pruning).
2. Each study's best trial (the highest mean normalized final score) sets that torso's values on the full
   board, which runs on its own seeds: ``configs/leaderboard_tuned.yaml``.

Usage:
    python scripts/make_tuning_configs.py                      # write configs/tune_torsos/<torso>.yaml
    for f in configs/tune_torsos/*.yaml; do dream-rl tune "$f" --trials 8 --workers 2; done
    python scripts/make_tuning_configs.py --tuned [--runs runs] [--seeds 0,1,2,3,4]
    dream-rl compare configs/leaderboard_tuned.yaml --workers 2

``--tuned`` reads ``<runs>/tune-torso-<torso>/trials.csv`` (written by ``dream-rl tune``) for every torso and
refuses, in one line, a torso without a study, a study whose number of finished trials is not ``TRIALS``
(``--trials`` changes the count, for every torso alike) or one with no complete trial.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_leaderboard_configs import QUICK, ROOT, SUITE, WIDTH  # noqa: E402  (a sibling script, not a package)

from dream_rl import TORSOS  # noqa: E402
from dream_rl.errors import ConfigError  # noqa: E402
from dream_rl.torsos.base import LEARNING_RATE_SCALE_SPACE  # noqa: E402

TRIALS = 8  # per torso, every torso alike
TUNING_SEEDS = [100, 101]  # the quick board's tuning seeds (its PPO settings were tuned on them too)
BOARD_SEEDS = [0, 1, 2, 3, 4]  # the tuned full board's own seeds: 5, for tighter intervals than the untuned 3
OBJECTIVE = "final"  # the boards score the last evaluation
SAMPLER = {"n_startup_trials": 4, "seed": 0}  # half the trials random, then TPE
EVAL_EPISODES = 20
FOLDER = "tune_torsos"  # configs/tune_torsos/<torso>.yaml
TUNED_BOARD = "leaderboard_tuned.yaml"
SIGNIFICANT = 3  # digits kept of a tuned float in the board config
FINISHED = ("COMPLETE", "PRUNED", "FAIL")  # trial states that spent their budget


def study_name(torso: str) -> str:
    """The tune config's name, hence its folder ``<output_dir>/<name>/`` and default study name."""
    return f"tune-torso-{torso.replace('_', '-')}"


def policy_entry(torso: str) -> dict[str, Any]:
    """The torso's policy as on the boards: MlpTorsoPolicy at width 64, its own defaults."""
    return {"policy": "MlpTorsoPolicy", "policy_kwargs": {"torso": torso, "lstm_hidden_size": WIDTH}}


def torso_space(torso: str) -> dict[str, dict[str, Any]]:
    """The tune space of ``torso``: the shared learning-rate multiple, then the options its class declares."""
    space = {f"policies.{torso}.learning_rate_scale": dict(LEARNING_RATE_SCALE_SPACE)}
    for option, spec in TORSOS[torso].search_space.items():
        space[f"policies.{torso}.policy_kwargs.torso_kwargs.{option}"] = dict(spec)
    return space


def env_entries(envs: Sequence[tuple[str, dict, dict, int]]) -> list[dict[str, Any]]:
    """A board's ``envs:`` list (as ``make_leaderboard_configs.make_config`` writes it)."""
    return [
        {"id": env_id, **({"kwargs": kwargs} if kwargs else {}), "n_envs": 8, "algo": dict(algo),
         "total_timesteps": budget, "eval_every": budget // 8}
        for env_id, kwargs, algo, budget in envs
    ]


def make_tune_config(torso: str) -> dict[str, Any]:
    """The tune config of one torso: the quick board's envs with this torso alone, on the tuning seeds."""
    return {
        "name": study_name(torso),
        "envs": env_entries(QUICK),
        "policies": {torso: policy_entry(torso)},
        "train": {"total_timesteps": max(budget for *_, budget in QUICK), "seeds": list(TUNING_SEEDS),
                  "eval_episodes": EVAL_EPISODES, "progress_bar": False},
        "output_dir": "runs",
        "tune": {"policy": torso, "objective": OBJECTIVE, "space": torso_space(torso), "sampler": dict(SAMPLER),
                 "pruner": None},
    }


def generated_configs() -> dict[str, str]:
    """Every tune config this script writes: path under configs/ -> text."""
    files = {}
    for torso in TORSOS:
        header = (
            "# Generated by scripts/make_tuning_configs.py from dream_rl.TORSOS and the torso's search_space:\n"
            "# edit those, not this file. Equal-budget tuning (docs/tuning.md): every torso, the same trials.\n"
            f"#   dream-rl tune configs/{FOLDER}/{torso}.yaml --trials {TRIALS} --workers 2\n"
        )
        files[f"{FOLDER}/{torso}.yaml"] = header + yaml.safe_dump(make_tune_config(torso), sort_keys=False, width=120)
    return files


# --------------------------------------------------------------------------------------------
# The tuned board


class BestTrial(NamedTuple):
    """A study's best trial: its number, value (mean normalized final score) and sampled values by dotted path."""

    number: int
    value: float
    params: dict[str, Any]
    finished: int  # the study's finished trials (complete, pruned or failed)


def best_trial(trials_csv: Path, trials: int = TRIALS) -> BestTrial:
    """The best complete trial in a ``trials.csv`` of ``dream-rl tune`` (ties: the earlier trial), after
    checking that the study spent exactly ``trials`` trials."""
    if not trials_csv.is_file():
        raise ConfigError(f"{trials_csv}: no such file: run dream-rl tune on the torso's config first")
    with trials_csv.open(newline="") as file:
        rows = list(csv.DictReader(file))
    missing = {"number", "state", "value", "params"} - set(rows[0] if rows else {})
    if missing:
        raise ConfigError(f"{trials_csv}: not a trials.csv of dream-rl tune (no {', '.join(sorted(missing))} column)")
    finished = [row for row in rows if row["state"] in FINISHED]
    if len(finished) != trials:
        raise ConfigError(
            f"{trials_csv}: {len(finished)} finished trials, the protocol gives every torso {trials}: "
            + ("run the rest with dream-rl tune ... --trials " + str(trials - len(finished)) if len(finished) < trials
               else "tune every torso to that count, or pass --trials to match")
        )
    complete = [row for row in finished if row["state"] == "COMPLETE" and row["value"] not in ("", None)]
    complete = [row for row in complete if math.isfinite(float(row["value"]))]
    if not complete:
        raise ConfigError(f"{trials_csv}: no complete trial of {len(finished)}: widen the space or check the failures")
    best = max(complete, key=lambda row: (float(row["value"]), -int(row["number"])))
    return BestTrial(int(best["number"]), float(best["value"]), json.loads(best["params"]), len(finished))


def _rounded(value: Any) -> Any:
    """A float to ``SIGNIFICANT`` significant digits (the board config's precision); anything else as is."""
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


def tuned_policy(torso: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The torso's board policy with a trial's values: the learning-rate multiple and its torso_kwargs."""
    entry = policy_entry(torso)
    scale_key = f"policies.{torso}.learning_rate_scale"
    option_prefix = f"policies.{torso}.policy_kwargs.torso_kwargs."
    options = {}
    for key, value in params.items():
        if key == scale_key:
            entry["learning_rate_scale"] = _rounded(value)
        elif key.startswith(option_prefix):
            options[key.removeprefix(option_prefix)] = _rounded(value)
        else:
            raise ConfigError(f"the study of {torso} tuned {key}, which is not in its protocol space: {scale_key} or "
                              f"{option_prefix}<option>")
    if options:
        entry["policy_kwargs"]["torso_kwargs"] = options
    return entry


def tuned_board(best: Mapping[str, BestTrial], seeds: Sequence[int] = BOARD_SEEDS) -> dict[str, Any]:
    """The full board's config with each torso's chosen values (every torso of TORSOS, in its order)."""
    missing = [torso for torso in TORSOS if torso not in best]
    if missing:
        raise ConfigError(f"no study for {', '.join(missing)}: every torso is tuned before the board is written")
    return {
        "name": "leaderboard_tuned",
        "envs": env_entries(SUITE),
        "policies": {torso: tuned_policy(torso, best[torso].params) for torso in TORSOS},
        "train": {"total_timesteps": max(budget for *_, budget in SUITE), "seeds": list(seeds),
                  "eval_episodes": EVAL_EPISODES, "progress_bar": False},
        "report": {"baseline": "lstm"},
        "output_dir": "runs",
    }


def tuned_board_text(best: Mapping[str, BestTrial], seeds: Sequence[int] = BOARD_SEEDS) -> str:
    """``configs/leaderboard_tuned.yaml``: the board and, in its header, where each torso's values come from."""
    config = tuned_board(best, seeds)
    lines = [
        "# Generated by scripts/make_tuning_configs.py --tuned from the equal-budget studies (docs/tuning.md):",
        f"# every torso tuned with {next(iter(best.values())).finished} trials on the quick board, seeds "
        f"{TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]}; the board runs its own seeds.",
        "# torso: best trial, mean normalized final score over the quick board",
        *(f"#   {torso}: trial {best[torso].number}, {best[torso].value:.3f}" for torso in TORSOS),
        "#   dream-rl compare configs/leaderboard_tuned.yaml --workers 2",
    ]
    return "\n".join(lines) + "\n" + yaml.safe_dump(config, sort_keys=False, width=120)


def read_studies(runs: Path, trials: int = TRIALS) -> dict[str, BestTrial]:
    """Every torso's best trial from ``<runs>/<study_name(torso)>/trials.csv``."""
    return {torso: best_trial(runs / study_name(torso) / "trials.csv", trials) for torso in TORSOS}


# --------------------------------------------------------------------------------------------
# Command line


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds as 0,1,2, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0 such as 0,1,2,3,4, got {text!r}")
    if set(seeds) & set(TUNING_SEEDS):
        raise argparse.ArgumentTypeError(f"the board's seeds must not include the tuning seeds {TUNING_SEEDS}")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuned", action="store_true",
                        help=f"write configs/{TUNED_BOARD} from the studies, instead of the tune configs")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the tune configs' output_dir (default: runs)")
    parser.add_argument("--trials", type=int, default=TRIALS, help=f"trials each study must have (default: {TRIALS})")
    parser.add_argument("--seeds", type=_seeds, default=list(BOARD_SEEDS), help="the tuned board's seeds (default: 0-4)")
    parser.add_argument("--out", type=Path, default=ROOT / "configs", help="where the configs go (default: configs/)")
    args = parser.parse_args(argv)
    try:
        if args.tuned:
            text = tuned_board_text(read_studies(args.runs, args.trials), args.seeds)
            (args.out / TUNED_BOARD).write_text(text)
            print(f"wrote {args.out / TUNED_BOARD}")
            return 0
        for path, text in generated_configs().items():
            (args.out / path).parent.mkdir(parents=True, exist_ok=True)
            (args.out / path).write_text(text)
        print(f"wrote {len(TORSOS)} tune configs in {args.out / FOLDER}")
    except ConfigError as error:
        print(f"make_tuning_configs.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
