"""Write configs/leaderboard.yaml and configs/leaderboard_quick.yaml from the torso registry.

Every registered torso runs through ``MlpTorsoPolicy`` at the same width (64) with the same PPO
settings and budget per env: only the memory differs. The PPO settings come in five groups (one per
env family, the non-stationary CartPole sharing the control group's), each tuned once with the LSTM
and shared by every torso. It also writes the tuning configs (``configs/tune_board_<group>.yaml``,
``configs/tune_quick_<env>.yaml``). Run again after a torso is added or a group is tuned:
    python scripts/make_leaderboard_configs.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dream_rl import TORSOS

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 64


def env_name(env_id: str) -> str:
    """``dream_rl/TMaze-v0`` → ``TMaze``."""
    return env_id.split("/")[-1].rsplit("-v", 1)[0]


# The starting PPO settings of each group (from configs/masked_control.yaml, tmaze.yaml,
# repeat_recall.yaml, nonstationary.yaml and meta_bandit.yaml).
CONTROL = {"n_steps": 64, "batch_size": 256, "n_epochs": 10, "learning_rate": 1.0e-3, "gamma": 0.98,
           "gae_lambda": 0.95, "ent_coef": 0.0}
TMAZE = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 1.0e-3, "gamma": 0.99, "ent_coef": 0.01}
RECALL = {"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1.0e-3, "gamma": 0.9, "ent_coef": 0.01}
BANDIT = {"n_steps": 100, "batch_size": 400, "n_epochs": 4, "learning_rate": 5.0e-4, "gamma": 0.9, "ent_coef": 0.01}
META = {**BANDIT, "gamma": 0.95}

# The full board's PPO settings, one set per settings group, used by every torso: each group's
# starting values (above) with learning rate, epochs and entropy coefficient tuned once, by
# `dream-rl tune configs/tune_board_<group>.yaml --trials 8` (written below): the LSTM, the baseline memory,
# on one representative env of the group at the board's budget, seeds 100-101 (the board runs
# seeds 0-2). A group missing here keeps its starting values: every trial of the t-maze group scored
# 0.5 (the LSTM reaches the junction but never recalls the cue through a corridor of 20 with any of
# them), so that search could not choose.
TUNED: dict[str, dict] = {
    "control": {"learning_rate": 2.77e-4, "n_epochs": 10, "ent_coef": 3.9e-2},  # trial 6: 0.843 (others 0.28-0.78)
    "recall": {"learning_rate": 2.72e-3, "n_epochs": 5, "ent_coef": 4.9e-4},  # trial 5: 0.739 (others 0.14-0.43)
    "bandit": {"learning_rate": 2.99e-3, "n_epochs": 2, "ent_coef": 3.1e-3},  # trial 7: 0.433 (others 0.12-0.41)
    "meta": {"learning_rate": 2.45e-3, "n_epochs": 6, "ent_coef": 2.0e-4},  # trial 6: 0.504 (others 0.25-0.32)
}
# group -> (its starting settings, the env it is tuned on: id, kwargs, budget)
GROUPS = {
    "control": (CONTROL, ("dream_rl/CartPoleNoVel-v0", {}, 100_000)),
    "tmaze": (TMAZE, ("dream_rl/TMaze-v0", {"corridor_length": 20}, 50_000)),
    "recall": (RECALL, ("dream_rl/RepeatPrevious-v0", {"k": 4}, 50_000)),
    "bandit": (BANDIT, ("dream_rl/SwitchingBandit-v0", {"switch_prob": 0.05}, 50_000)),
    "meta": (META, ("dream_rl/MetaBandit-v0", {}, 50_000)),
}


def group_settings(group: str, **overrides: object) -> dict:
    """A group's PPO settings: its starting values, then the tuned ones, then env-specific overrides."""
    return {**GROUPS[group][0], **TUNED.get(group, {}), **overrides}


# (id, kwargs, PPO settings, budget of the full leaderboard)
SUITE = [
    ("dream_rl/CartPoleNoVel-v0", {}, group_settings("control"), 100_000),
    ("dream_rl/PendulumNoVel-v0", {}, group_settings("control", n_epochs=5), 100_000),  # as masked_control.yaml
    ("dream_rl/MountainCarNoVel-v0", {}, group_settings("control"), 100_000),
    ("dream_rl/AcrobotNoVel-v0", {}, group_settings("control"), 100_000),
    ("dream_rl/CartPoleNoisy-v0", {}, group_settings("control"), 100_000),
    ("dream_rl/TMaze-v0", {"corridor_length": 20}, group_settings("tmaze"), 50_000),
    ("dream_rl/TMazeLong-v0", {}, group_settings("tmaze"), 50_000),
    ("dream_rl/RepeatFirst-v0", {}, group_settings("recall"), 30_000),
    ("dream_rl/RepeatPrevious-v0", {"k": 4}, group_settings("recall"), 50_000),
    ("dream_rl/CountRecall-v0", {}, group_settings("recall"), 50_000),
    ("dream_rl/SwitchingBandit-v0", {"switch_prob": 0.05}, group_settings("bandit"), 50_000),
    ("dream_rl/SwitchingCartPole-v0", {}, group_settings("control"), 100_000),
    ("dream_rl/MetaBandit-v0", {}, group_settings("meta"), 50_000),
]
# The quick board: one env of four families, 2 seeds, short budgets (minutes on 2 cores). Its PPO
# settings were tuned once per env, for every torso alike: `dream-rl tune configs/tune_quick_<env>.yaml
# --trials 8` (written below) searches learning rate, epochs and entropy coefficient with the LSTM, the
# baseline memory, on seeds 100-101 (the board runs seeds 0-1), and the best trial's values are here.
QUICK_TUNED = {
    "TMaze": {"learning_rate": 2.52e-3, "n_epochs": 10, "ent_coef": 3.4e-4},
    "RepeatPrevious": {"learning_rate": 2.74e-3, "n_epochs": 8, "ent_coef": 2.5e-2},
    "SwitchingBandit": {"learning_rate": 6.5e-4, "n_epochs": 8, "ent_coef": 4.2e-3},
    "MetaBandit": {"learning_rate": 6.5e-4, "n_epochs": 8, "ent_coef": 4.2e-3},
}
QUICK_UNTUNED = [
    ("dream_rl/TMaze-v0", {"corridor_length": 10}, TMAZE, 8_192),
    ("dream_rl/RepeatPrevious-v0", {"k": 4}, RECALL, 8_192),
    ("dream_rl/SwitchingBandit-v0", {"switch_prob": 0.05}, BANDIT, 8_000),
    ("dream_rl/MetaBandit-v0", {}, META, 8_000),
]
QUICK = [
    (env_id, kwargs, {**algo, **QUICK_TUNED[env_name(env_id)]}, budget) for env_id, kwargs, algo, budget in QUICK_UNTUNED
]
TUNE_SPACE = {
    "algo.learning_rate": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
    "algo.n_epochs": {"type": "int", "low": 2, "high": 10},
    "algo.ent_coef": {"type": "float", "low": 1.0e-4, "high": 5.0e-2, "log": True},
}


def make_tune_config(name: str, env_id: str, kwargs: dict, algo: dict, budget: int, what: str) -> tuple[str, str]:
    """The file name and text of one tuning config (``algo``: the untuned settings it starts from)."""
    config = {
        "name": name.replace("_", "-"),
        "env": {"id": env_id, **({"kwargs": kwargs} if kwargs else {}), "n_envs": 8},
        "algo": algo,
        "policies": {"lstm": {"policy": "MlpTorsoPolicy", "policy_kwargs": {"torso": "lstm", "lstm_hidden_size": WIDTH}}},
        "train": {"total_timesteps": budget, "seeds": [100, 101], "eval_every": budget // 8, "eval_episodes": 20,
                  "progress_bar": False},
        "output_dir": "runs",
        "tune": {"policy": "lstm", "objective": "final", "space": TUNE_SPACE, "sampler": {"n_startup_trials": 4, "seed": 0},
                 "pruner": None},
    }
    header = (f"# Generated by scripts/make_leaderboard_configs.py: the PPO settings of {what},\n"
              "# tuned once with the LSTM and then used by every torso.\n"
              f"#   dream-rl tune configs/{name}.yaml --trials 8\n")
    return f"{name}.yaml", header + yaml.safe_dump(config, sort_keys=False, width=120)


def make_config(name: str, envs: list, seeds: list[int], eval_episodes: int, header: str) -> str:
    config = {
        "name": name,
        "envs": [
            {"id": env_id, **({"kwargs": kwargs} if kwargs else {}), "n_envs": 8, "algo": algo,
             "total_timesteps": budget, "eval_every": budget // 8}
            for env_id, kwargs, algo, budget in envs
        ],
        "policies": {
            name: {"policy": "MlpTorsoPolicy", "policy_kwargs": {"torso": name, "lstm_hidden_size": WIDTH}}
            for name in TORSOS
        },
        "train": {"total_timesteps": max(budget for *_, budget in envs), "seeds": seeds,
                  "eval_episodes": eval_episodes, "progress_bar": False},
        "report": {"baseline": "lstm"},
        "output_dir": "runs",
    }
    return header + yaml.safe_dump(config, sort_keys=False, width=120)


def generated_configs() -> dict[str, str]:
    """Every file this script writes under configs/: name -> text."""
    note = ("# Generated by scripts/make_leaderboard_configs.py from dream_rl.TORSOS: edit the script, not this file.\n"
            "# Every torso through MlpTorsoPolicy at width 64, the same PPO settings per env family and the\n"
            "# same budget per env for every torso.\n")
    files = {
        "leaderboard.yaml": make_config(
            "leaderboard", SUITE, [0, 1, 2], 20,
            note + "#   dream-rl compare configs/leaderboard.yaml --workers 2   (hours on 2 cores)\n"),
        "leaderboard_quick.yaml": make_config(
            "leaderboard_quick", QUICK, [0, 1], 20,
            note + "#   dream-rl compare configs/leaderboard_quick.yaml --workers 2   (about 5 min on an idle 2-core machine)\n"),
    }
    tuning = [make_tune_config(f"tune_quick_{env_name(env_id).lower()}", env_id, kwargs, algo, budget,
                               "one env of the quick leaderboard")
              for env_id, kwargs, algo, budget in QUICK_UNTUNED]
    tuning += [make_tune_config(f"tune_board_{group}", env_id, kwargs, algo, budget,
                                f"the {group!r} settings group of the full leaderboard")
               for group, (algo, (env_id, kwargs, budget)) in GROUPS.items()]
    return {**files, **dict(tuning)}


def main() -> None:
    for file_name, text in generated_configs().items():
        (ROOT / "configs" / file_name).write_text(text)


if __name__ == "__main__":
    main()
