"""Experiments: config validation (one test per kind of error), overrides, the CLI, a tiny
end-to-end train + compare that checks every output, and resume after an interruption."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecCheckNan, VecMonitor

from dream_rl import TORSOS
from dream_rl.cli import main
from dream_rl.experiments.config import (
    ConfigError,
    apply_overrides,
    config_to_yaml,
    load_config,
    parse_override,
    validate_config,
)
from dream_rl.experiments.runner import (
    EVAL_COLUMNS,
    TrainingInterrupted,
    make_vec_env,
    read_run_info,
    train_run,
)

REPO = Path(__file__).resolve().parents[2]


def base_config(tmp_path: Path | None = None) -> dict[str, Any]:
    """A tiny valid config: 3 policies, hidden 16, 2 envs, 512 steps."""
    return {
        "name": "tiny",
        "env": {"id": "dream_rl/RepeatFirst-v0", "kwargs": {"length": 8}, "n_envs": 2},
        "algo": {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "learning_rate": 1e-3},
        "policies": {
            "dream": {"policy": "MlpDreamPolicy", "policy_kwargs": {"lstm_hidden_size": 16, "dream_kwargs": {"rank": 4}}},
            "lstm": {"policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": 16}},
            "gru": {"policy": "MlpGruPolicy", "policy_kwargs": {"lstm_hidden_size": 16}},
        },
        "train": {"total_timesteps": 512, "seeds": [0], "eval_every": 128, "eval_episodes": 4, "progress_bar": False},
        "output_dir": str(tmp_path / "runs") if tmp_path else "runs",
    }


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def config_error(raw: dict[str, Any], overrides: list[str] = ()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_config(apply_overrides(raw, overrides))
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return info.value


# --------------------------------------------------------------------------------------------
# Validation: one test per kind of error


def test_valid_config_resolves_defaults():
    config = validate_config(base_config())
    assert config.train.checkpoint_every == config.train.eval_every == 128
    assert config.train.keep_checkpoints == 3 and config.train.torch_threads == 1
    assert config.algo["n_steps"] == 32 and config.algo["gamma"] == 0.99 and config.algo["device"] == "cpu"
    assert config.env.vec_env == "dummy"
    assert config.run("lstm", 0).run_dir == Path("runs/tiny/lstm/seed_0")
    # the resolved config is a valid config that resolves to itself
    assert validate_config(yaml.safe_load(config_to_yaml(config))) == config


def test_unknown_top_level_key():
    raw = base_config()
    raw["nmae"] = raw.pop("name")
    error = config_error(raw)
    assert "unknown key 'nmae'" in str(error) and "'name'" in str(error)
    assert error.key == "nmae" and error.suggestion == "name"


def test_unknown_nested_key_suggests_nearest():
    error = config_error(base_config(), ["train.total_timestep=100"])
    assert "unknown key 'train.total_timestep'" in str(error)
    assert "did you mean 'train.total_timesteps'?" in str(error)


def test_missing_required_key():
    raw = base_config()
    del raw["train"]["total_timesteps"]
    assert "missing required key 'train.total_timesteps'" in str(config_error(raw))


def test_wrong_type():
    error = config_error(base_config(), ["train.total_timesteps=many"])
    assert error.key == "train.total_timesteps" and "expected an integer" in str(error)
    assert "expected true or false" in str(config_error(base_config(), ["train.progress_bar=3"]))
    assert "list of integers" in str(config_error(base_config(), ["train.seeds=3"]))


def test_out_of_range():
    error = config_error(base_config(), ["algo.gamma=1.5"])
    assert error.key == "algo.gamma" and "must be <= 1" in str(error)
    assert "must be > 0" in str(config_error(base_config(), ["algo.learning_rate=0"]))
    assert "must be >= 1" in str(config_error(base_config(), ["env.n_envs=0"]))
    assert "distinct" in str(config_error(base_config(), ["train.seeds=[1,1]"]))


def test_unknown_algo_key_suggests_constructor_argument():
    error = config_error(base_config(), ["algo.n_step=64"])
    assert "unknown key 'algo.n_step'" in str(error) and "did you mean 'algo.n_steps'?" in str(error)


def test_algo_key_set_by_the_runner():
    error = config_error(base_config(), ["algo.seed=3"])
    assert error.key == "algo.seed" and "train.seeds" in str(error)


def test_unknown_policy():
    error = config_error(base_config(), ["policies.dream.policy=MlpDreemPolicy"])
    assert "unknown policy 'MlpDreemPolicy'" in str(error) and "MlpDreamPolicy" in str(error)


def test_unknown_policy_kwarg_and_dream_kwarg():
    error = config_error(base_config(), ["policies.lstm.policy_kwargs.lstm_hidden=8"])
    assert "did you mean 'policies.lstm.policy_kwargs.lstm_hidden_size'?" in str(error)
    error = config_error(base_config(), ["policies.dream.policy_kwargs.dream_kwargs.rnk=2"])
    assert "dream_kwargs.rank" in str(error)
    error = config_error(base_config(), ["policies.dream.policy_kwargs.dream_kwargs.rank=64"])
    assert "rank must be <= hidden_dim" in str(error)


def test_unregistered_env_id():
    error = config_error(base_config(), ["env.id=dream_rl/RepeatFrist-v0"])
    assert "not a registered gymnasium environment" in str(error)
    assert error.suggestion == "dream_rl/RepeatFirst-v0"


def test_unknown_env_kwarg():
    error = config_error(base_config(), ["env.kwargs.lenght=4"])
    assert "did you mean 'env.kwargs.length'?" in str(error)


@pytest.mark.parametrize("override", ["train.total_timesteps", "=5", "train..seeds=1", "train.seeds=", "train.seeds=[0,1"])
def test_bad_override_syntax(override):
    with pytest.raises(ConfigError, match="bad override"):
        parse_override(override)


def test_override_through_a_scalar():
    with pytest.raises(ConfigError, match="name is not a mapping"):
        apply_overrides(base_config(), ["name.x=1"])


def test_duplicate_yaml_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_config(path)


# --------------------------------------------------------------------------------------------
# Overrides


def test_overrides_set_values_of_any_type(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    config = load_config(
        path,
        [
            "train.total_timesteps=5000",
            "train.seeds=[0,1]",
            "algo.learning_rate=3e-4",  # YAML 1.1 would read this as a string
            "algo.target_kl=0.02",  # not in the file: created
            "policies.lstm.policy_kwargs.net_arch=[8, 8]",
            "env.kwargs.length=6",
            "name=other",
        ],
    )
    assert config.train.total_timesteps == 5000 and config.train.seeds == [0, 1]
    assert config.algo["learning_rate"] == pytest.approx(3e-4) and config.algo["target_kl"] == 0.02
    assert config.policies["lstm"].policy_kwargs["net_arch"] == [8, 8]
    assert config.env.kwargs == {"length": 6} and config.name == "other"
    assert load_config(path, ["train.total_timesteps=1e4"]).train.total_timesteps == 10000


# --------------------------------------------------------------------------------------------
# Command line


@pytest.mark.parametrize("command", [[], ["train"], ["compare"], ["report"], ["evaluate"], ["envs"]])
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: dream-rl" in capsys.readouterr().out


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    path = write_config(tmp_path, base_config(tmp_path))
    assert main(["train", str(path), "train.total_timestep=10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "did you mean 'train.total_timesteps'?" in err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_envs_lists_the_suite(capsys):
    assert main(["envs"]) == 0
    assert "dream_rl/TMaze-v0" in capsys.readouterr().out


def test_python_dash_m_and_dry_run(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "dream_rl", "train", str(path), "--dry-run", "train.seeds=[3]"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "dream/seed_3" in done.stdout and not (tmp_path / "runs").exists()


def test_envs_are_monitored_and_nan_checked(tmp_path):
    env = make_vec_env(validate_config(base_config(tmp_path)).env, n_envs=2, seed=0)
    assert isinstance(env, VecCheckNan) and env.raise_exception and isinstance(env.venv, VecMonitor)
    env.close()


# --------------------------------------------------------------------------------------------
# End to end


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_train_compare_evaluate_end_to_end(tmp_path, capsys):
    raw = base_config(tmp_path)
    path = write_config(tmp_path, raw)
    assert main(["compare", str(path), "--no-progress", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    experiment = tmp_path / "runs" / "tiny"

    for label in ("dream", "lstm", "gru"):
        run_dir = experiment / label / "seed_0"
        # TensorBoard events with SB3's and our scalars
        events = list((run_dir / "tb").glob("events.out.tfevents.*"))
        assert events and all(e.stat().st_size > 0 for e in events)
        tags = tensorboard_tags(run_dir / "tb")
        assert {"train/loss", "rollout/ep_rew_mean", "eval/mean_return", "eval/normalized_score"} <= tags
        if label == "dream":
            assert {"torso/surprise", "torso/tau_eff", "torso/fast_weight_norm"} <= tags
        # checkpoints and the final model
        assert list((run_dir / "checkpoints").glob("rl_model_*_steps.zip"))
        model = RecurrentPPO.load(run_dir / "final_model.zip", device="cpu")
        assert model.num_timesteps == 512
        # the resolved config: a valid config for this run alone
        run_config = load_config(run_dir / "config.yaml")
        assert list(run_config.policies) == [label] and run_config.train.seeds == [0]
        # the evaluation record
        rows = read_csv(run_dir / "eval.csv")
        assert tuple(rows[0]) == EVAL_COLUMNS
        assert [int(r["timesteps"]) for r in rows] == [0, 128, 256, 384, 512]
        assert all(0.0 <= float(r["mean_score"]) <= 1.0 and int(r["episodes"]) == 4 for r in rows)
        info = read_run_info(run_dir)
        assert info["status"] == "completed" and info["timesteps"] == 512 and info["steps_per_second"] > 0

    # the comparison
    table = (experiment / "comparison.md").read_text()
    assert "| policy | final normalized score | AUC (normalized score) |" in table
    for label in ("dream", "lstm", "gru"):
        assert f"| {label} (`" in table
    assert table in out
    rows = read_csv(experiment / "comparison.csv")
    assert [r["policy"] for r in rows] == ["dream", "lstm", "gru"]
    assert all(0.0 <= float(r["auc_mean"]) <= 1.0 and float(r["steps_per_second_mean"]) > 0 for r in rows)
    png = (experiment / "learning_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    # report again from the experiment dir, and evaluate a run
    assert main(["report", str(experiment)]) == 0
    assert main(["evaluate", str(experiment / "gru" / "seed_0"), "--episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "normalized score" in out and "(3 episodes, final_model.zip)" in out

    # a second compare skips the finished runs
    assert main(["compare", str(path), "--no-progress", "--workers", "1"]) == 0
    assert capsys.readouterr().out.count("already trained") == 3


def tensorboard_tags(directory: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in directory.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


class InterruptAt(BaseCallback):
    """Simulates Ctrl-C once training reaches ``steps``."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt
        return True


class StartProbe(BaseCallback):
    def _on_training_start(self) -> None:
        self.started_at = self.num_timesteps

    def _on_step(self) -> bool:
        return True


def test_interrupt_saves_a_checkpoint_and_train_resumes(tmp_path, monkeypatch):
    raw = base_config(tmp_path)
    raw["train"].update(total_timesteps=640, eval_every=256, checkpoint_every=256)
    config = validate_config(raw)
    run = config.run("gru", 0)
    run_dir = run.run_dir

    with pytest.raises(TrainingInterrupted) as info:
        train_run(run, extra_callbacks=[InterruptAt(300)], log=lambda line: None)
    assert isinstance(info.value, KeyboardInterrupt)
    # step 300 is inside the rollout 256-320 (2 envs x 32 steps): the model has learned from 256 steps
    assert info.value.checkpoint == run_dir / "checkpoints" / "rl_model_256_steps.zip"
    assert info.value.checkpoint.exists() and not (run_dir / "final_model.zip").exists()
    assert read_run_info(run_dir)["status"] == "interrupted"
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert [int(r["timesteps"]) for r in read_csv(run_dir / "eval.csv")] == [0, 256]

    probe, lines = StartProbe(), []
    result = train_run(run, extra_callbacks=[probe], log=lines.append)
    assert probe.started_at == 256, "resumed from the checkpoint, not from zero"
    assert "resuming from rl_model_256_steps.zip" in lines[0]
    assert result.status == "completed" and result.timesteps == 640
    assert RecurrentPPO.load(run_dir / "final_model.zip", device="cpu").num_timesteps == result.timesteps
    steps = [int(r["timesteps"]) for r in read_csv(run_dir / "eval.csv")]
    assert steps[:3] == [0, 256, 512] and steps == sorted(set(steps)) and steps[-1] == result.timesteps
    info = read_run_info(run_dir)
    assert info["status"] == "completed" and info["train_timesteps"] == result.timesteps

    # the CLI turns the interruption into a message and exit status 130
    import dream_rl.experiments.launch as launch

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise TrainingInterrupted(run_dir, run_dir / "checkpoints" / "rl_model_3_steps.zip", 3)

    monkeypatch.setattr(launch, "run_experiment", interrupted)
    assert main(["train", str(write_config(tmp_path, raw)), "--workers", "1"]) == 130


def test_corrupt_checkpoint_is_a_clear_error_and_kept(tmp_path):
    raw = base_config(tmp_path)
    raw["train"].update(total_timesteps=640, eval_every=256, checkpoint_every=256)
    run = validate_config(raw).run("gru", 0)
    with pytest.raises(TrainingInterrupted) as info:
        train_run(run, extra_callbacks=[InterruptAt(300)], log=lambda line: None)
    checkpoint = info.value.checkpoint
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(ConfigError, match=r"rl_model_256_steps\.zip is unreadable.*--fresh"):
        train_run(run, log=lambda line: None)
    assert checkpoint.exists(), "nothing is deleted behind the user's back"


def test_changed_setup_is_refused(tmp_path):
    run = validate_config(base_config(tmp_path)).run("lstm", 0)
    run.run_dir.mkdir(parents=True)
    changed = validate_config(apply_overrides(base_config(tmp_path), ["algo.n_steps=16"]))
    (run.run_dir / "config.yaml").write_text(config_to_yaml(changed.run("lstm", 0).config))
    with pytest.raises(ConfigError, match=r"algo.n_steps: 16 in the run, 32 now.*--fresh"):
        train_run(run, log=lambda line: None)


# studies of one memory rather than comparisons: the memoryless control on every env and its fully
# observable twin; DREAM evaluated with and without plasticity
SINGLE_MEMORY_STUDIES = {"diagnostics_gap.yaml": "mlp", "frozen_plasticity.yaml": "dream"}


def test_shipped_configs_are_valid():
    # tune_*.yaml are tune configs (a tune: section, one policy): tests/experiments/test_tune.py checks them
    paths = sorted(p for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("tune_"))
    assert any(p.name == "quickstart.yaml" for p in paths)
    for path in paths:
        config = load_config(path)
        sizes = {p.policy_kwargs.get("lstm_hidden_size") for p in config.policies.values()}
        assert len(sizes) == 1, f"{path.name}: policies must share one hidden size"
        memories = {_memory_of(p.policy, p.policy_kwargs) for p in config.policies.values()}
        if path.name in SINGLE_MEMORY_STUDIES:
            assert memories == {SINGLE_MEMORY_STUDIES[path.name]}, f"{path.name}: runs {memories}"
        else:  # a comparison: DREAM against both baselines
            assert memories >= {"dream", "lstm", "gru"}, f"{path.name}: compares {memories}"
        if path.name.startswith("leaderboard"):
            assert memories == set(TORSOS), f"{path.name}: regenerate it with scripts/make_leaderboard_configs.py"
        assert np.all(np.array(config.train.seeds) >= 0)


def _script(name: str):
    """scripts/<name>.py imported as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_configs_are_current():
    """configs/leaderboard*.yaml and the tuning configs are what scripts/make_leaderboard_configs.py
    writes now (its TUNED values and TORSOS included): a stale file fails here, not on the board."""
    for name, text in _script("make_leaderboard_configs").generated_configs().items():
        assert (REPO / "configs" / name).read_text() == text, f"configs/{name} is stale: run scripts/make_leaderboard_configs.py"


def _memory_of(policy: str, policy_kwargs: dict) -> str | None:
    """The torso a policy config runs."""
    if policy.endswith("TorsoPolicy") and policy != "MlpLstmTorsoPolicy":
        return policy_kwargs.get("torso", "lstm")
    return {"MlpDreamPolicy": "dream", "MlpLstmPolicy": "lstm", "MlpLstmTorsoPolicy": "lstm", "MlpGruPolicy": "gru"}.get(policy)


def test_experiment_config_keeps_earlier_seeds_and_policies(tmp_path):
    from dream_rl.experiments.launch import _merge_with_earlier_runs

    first = validate_config(apply_overrides(base_config(tmp_path), ["train.seeds=[0,1]"]))
    first.experiment_dir.mkdir(parents=True)
    (first.experiment_dir / "config.yaml").write_text(config_to_yaml(first))
    later = validate_config(apply_overrides(base_config(tmp_path), ["train.seeds=[1,2]", "policies={gru2: MlpGruPolicy}"]))
    merged = _merge_with_earlier_runs(later)
    assert merged.train.seeds == [0, 1, 2] and list(merged.policies) == ["dream", "lstm", "gru", "gru2"]
    other_algo = validate_config(apply_overrides(base_config(tmp_path), ["algo.n_epochs=3"]))
    assert _merge_with_earlier_runs(other_algo) == other_algo


def test_lr_select_chooses_on_tuning_seeds_and_reports_the_board_seeds(tmp_path, capsys):
    """scripts/lr_select.py: each policy's multiple is the best IQM on the tuning runs, and the
    aggregate it prints is of that multiple's board runs."""
    from dream_rl.experiments.launch import run_experiment
    from dream_rl.experiments.report import final_scores_over_envs, load_curves
    from dream_rl.experiments.stats import iqm

    raw = base_config(tmp_path)
    raw["policies"].pop("dream")
    raw["train"]["total_timesteps"] = 256
    dirs = {}
    for multiple in (0.5, 1.0):
        for kind, seeds in (("board", [0, 1]), ("tuning", [5, 6])):
            name = f"{kind}_{multiple:g}"
            config = validate_config(apply_overrides(raw, [
                f"name={name}", f"train.seeds={seeds}", f"algo.learning_rate={1e-3 * multiple}",
            ]))
            run_experiment(config, log=lambda message: None)
            dirs[multiple, kind] = tmp_path / "runs" / name

    def scores(path):
        config = load_config(path / "config.yaml")
        return final_scores_over_envs(config, [load_curves(config, env)[0] for env in config.env_list])[0]

    argv = []
    for multiple in (0.5, 1.0):
        argv += ["--trial", str(multiple), str(dirs[multiple, "board"]), str(dirs[multiple, "tuning"])]
    _script("lr_select").main(argv)
    printed = capsys.readouterr().out
    for policy in ("lstm", "gru"):
        tuning = {m: float(iqm(scores(dirs[m, "tuning"])[policy])) for m in (0.5, 1.0)}
        chosen = 1.0 if tuning[1.0] >= tuning[0.5] else 0.5  # ties keep the shared rate
        row = next(line for line in printed.splitlines() if line.startswith(f"| {policy} |") and "chosen" not in line)
        assert row.rstrip().endswith(f"| x{chosen:g} |"), row
        board_iqm = float(iqm(scores(dirs[chosen, "board"])[policy]))
        aggregate_row = [line for line in printed.splitlines() if line.startswith(f"| {policy} |")][-1]
        assert aggregate_row.split("|")[2].strip().strip("*").startswith(f"{board_iqm:.3f}"), aggregate_row
