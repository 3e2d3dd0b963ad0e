"""Experiments at suite scale: several envs per config, parallel workers, Ray, the run lock, the
aggregate over envs, and the command-line robustness items of issue 9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dream_rl.cli import main
from dream_rl.experiments.config import ConfigError, load_config, validate_config
from dream_rl.experiments.runlock import RunLock, RunLocked
from dream_rl.experiments.runner import TrainingInterrupted, read_run_info, train_run
from tests.experiments.test_experiments import InterruptAt, base_config, read_csv, write_config

REPO = Path(__file__).resolve().parents[2]


def suite_config(tmp_path: Path) -> dict[str, Any]:
    """Two envs (the second with its own budget and n_steps), two policies, one seed."""
    raw = base_config(tmp_path)
    raw["train"].update(total_timesteps=256, eval_every=128)
    env = raw.pop("env")
    raw["envs"] = [env, {**env, "label": "short", "kwargs": {"length": 4}, "total_timesteps": 128, "algo": {"n_steps": 16}}]
    raw["policies"] = {"gru": raw["policies"]["gru"], "lstm": raw["policies"]["lstm"]}
    return raw


def eval_values(run_dir: Path) -> list[dict[str, str]]:
    """eval.csv without the wall-clock column."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_csv(run_dir / "eval.csv")]


# --------------------------------------------------------------------------------------------
# Several envs


def test_envs_form_layout_overrides_and_round_trip(tmp_path):
    config = validate_config(suite_config(tmp_path))
    assert [env.label for env in config.envs] == ["RepeatFirst-v0", "short"]
    names = [run.name for run in config.runs()]
    assert names == ["RepeatFirst-v0/gru/seed_0", "RepeatFirst-v0/lstm/seed_0", "short/gru/seed_0", "short/lstm/seed_0"]
    short = config.run("gru", 0, env="short")
    assert short.run_dir == tmp_path / "runs" / "tiny" / "short" / "gru" / "seed_0"
    assert short.train.total_timesteps == 128 and short.algo["n_steps"] == 16
    assert config.run("gru", 0, env="RepeatFirst-v0").algo["n_steps"] == 32
    # the resolved config and a run's narrowed config are valid configs that resolve to themselves
    assert validate_config(config.to_dict()) == config
    narrowed = short.config
    assert validate_config(narrowed.to_dict()) == narrowed and narrowed.runs()[0].run_dir == short.run_dir


def test_envs_errors_name_the_entry(tmp_path):
    raw = suite_config(tmp_path)
    raw["envs"][1]["label"] = "RepeatFirst-v0"
    with pytest.raises(ConfigError, match=r"envs.1.label: .*both labelled 'RepeatFirst-v0'"):
        validate_config(raw)
    raw = suite_config(tmp_path)
    raw["envs"][1]["algo"] = {"n_step": 3}
    with pytest.raises(ConfigError, match=r"unknown key 'envs.1.algo.n_step' \(did you mean 'envs.1.algo.n_steps'\?\)"):
        validate_config(raw)
    raw = suite_config(tmp_path)
    raw["env"] = raw["envs"][0]
    with pytest.raises(ConfigError, match="either env: .* or envs:"):
        validate_config(raw)
    with pytest.raises(ConfigError, match="non-empty list of envs"):
        validate_config({**suite_config(tmp_path), "envs": []})


def test_torso_policy_by_name(tmp_path):
    from dream_rl import TORSOS

    raw = base_config(tmp_path)
    raw["policies"] = {"mem": {"policy": "MlpTorsoPolicy", "policy_kwargs": {"lstm_hidden_size": 8, "torso": "gru"}}}
    assert validate_config(raw).policies["mem"].policy_kwargs["torso"] == "gru"
    raw["policies"]["mem"]["policy_kwargs"]["torso"] = "grru"
    with pytest.raises(ConfigError, match=r"policy_kwargs.torso: unknown torso 'grru' \(did you mean 'gru'\?\)") as info:
        validate_config(raw)
    assert info.value.suggestion == "gru" and "gru" in TORSOS
    raw["policies"]["mem"]["policy_kwargs"] = {"lstm_hidden_size": 8, "torso": "dream", "torso_kwargs": {"rnak": 2}}
    with pytest.raises(ConfigError, match=r"did you mean 'policies.mem.policy_kwargs.torso_kwargs.rank'"):
        validate_config(raw)
    raw["policies"]["mem"] = {"policy": "MlpDreamPolicy", "policy_kwargs": {"torso": "gru"}}
    with pytest.raises(ConfigError, match="fixes the torso to 'dream': use MlpTorsoPolicy"):
        validate_config(raw)


def test_suite_compare_writes_per_env_tables_and_the_aggregate(tmp_path, capsys):
    pytest.importorskip("dream_rl.experiments.stats")
    path = write_config(tmp_path, suite_config(tmp_path))
    assert main(["compare", str(path), "--workers", "1", "--no-progress", "train.seeds=[0,1]"]) == 0
    out = capsys.readouterr().out
    experiment = tmp_path / "runs" / "tiny"
    for env, steps in (("RepeatFirst-v0", 256), ("short", 128)):
        for label in ("gru", "lstm"):
            assert int(read_csv(experiment / env / label / "seed_1" / "eval.csv")[-1]["timesteps"]) == steps
        assert [r["policy"] for r in read_csv(experiment / env / "comparison.csv")] == ["gru", "lstm"]
        assert (experiment / env / "learning_curves.png").read_bytes().startswith(b"\x89PNG")
    assert "128 env steps per run" in (experiment / "short" / "comparison.md").read_text()
    aggregate = read_csv(experiment / "aggregate.csv")
    assert [row["policy"] for row in aggregate] == ["gru", "lstm"]
    assert all(float(r["iqm_low"]) <= float(r["iqm"]) <= float(r["iqm_high"]) for r in aggregate)
    assert aggregate[1]["prob_improvement"] == "" and aggregate[0]["prob_improvement"] != ""  # lstm: the baseline
    assert (experiment / "performance_profiles.png").read_bytes().startswith(b"\x89PNG")
    overview = (experiment / "comparison.md").read_text()
    assert "aggregate over 2 envs" in overview and "P(policy > lstm)" in overview and overview.count("### ") == 3
    assert "| policy | RepeatFirst-v0 | short | envs ≥ lstm |" in overview  # the per-env table
    runs = read_csv(experiment / "scores.csv")  # every run's final score: the aggregate's input
    assert [(r["env"], r["policy"], r["seed"]) for r in runs][:3] == [
        ("RepeatFirst-v0", "gru", "0"), ("RepeatFirst-v0", "gru", "1"), ("RepeatFirst-v0", "lstm", "0"),
    ]
    assert len(runs) == 8
    gru_scores = np.array([[float(r["final_score"]) for r in runs if r["policy"] == "gru" and r["seed"] == seed] for seed in "01"])
    assert float(aggregate[0]["mean"]) == pytest.approx(gru_scores.mean())
    assert "aggregate over 2 envs" in out

    # evaluate and report find the env level; a second train skips every run
    assert main(["evaluate", str(experiment), "--episodes", "2"]) == 0
    assert capsys.readouterr().out.count("normalized score") == 8
    assert main(["report", str(experiment)]) == 0
    assert main(["train", str(path), "--workers", "1", "train.seeds=[0,1]"]) == 0
    assert capsys.readouterr().out.count("already trained") == 8


def test_min_max_scores_for_envs_without_references(tmp_path):
    from dream_rl.experiments.report import final_scores_over_envs

    class Curve:
        def __init__(self, label: str, seed: int, final: float, normalized: bool) -> None:
            import numpy as np

            self.label, self.seed = label, seed
            self.returns = np.array([0.0, final])
            self.scores = self.returns / 10 if normalized else None

        @property
        def curve(self):
            return self.scores if self.scores is not None else self.returns

    config = validate_config(suite_config(tmp_path))
    with_reference = [Curve("gru", 0, 5.0, True), Curve("lstm", 0, 10.0, True)]
    without = [Curve("gru", 0, -4.0, False), Curve("lstm", 0, 6.0, False)]
    scores, notes = final_scores_over_envs(config, [with_reference, without])
    assert scores["gru"].tolist() == [[0.5, 0.0]] and scores["lstm"].tolist() == [[1.0, 1.0]] and not notes
    scores, notes = final_scores_over_envs(config, [with_reference, without[:1]])
    assert list(scores) == ["gru"] and "lstm is left out" in notes[0]


# --------------------------------------------------------------------------------------------
# Parallel workers


def test_workers_compute_what_a_run_computes_alone(tmp_path):
    raw = base_config(tmp_path)
    raw["policies"] = {"dream": raw["policies"]["dream"], "gru": raw["policies"]["gru"]}
    raw["train"]["total_timesteps"] = 384
    alone = write_config(tmp_path, {**raw, "output_dir": str(tmp_path / "alone")})
    assert main(["train", str(alone), "--workers", "1"]) == 0
    together = tmp_path / "together.yaml"
    together.write_text(yaml.safe_dump({**raw, "output_dir": str(tmp_path / "together")}))
    assert main(["train", str(together), "--workers", "2"]) == 0
    for label in ("dream", "gru"):
        first = eval_values(tmp_path / "alone" / "tiny" / label / "seed_0")
        second = eval_values(tmp_path / "together" / "tiny" / label / "seed_0")
        assert len(first) == 4 and first == second
        assert read_run_info(tmp_path / "together" / "tiny" / label / "seed_0")["status"] == "completed"


def test_a_failed_run_does_not_stop_the_others(tmp_path, capsys):
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    # checkpoints are saved when a rollout starts: at step 64 of 128 (2 envs x 32 steps a rollout)
    raw["train"].update(seeds=[0, 1, 2], total_timesteps=128, checkpoint_every=64)
    path = write_config(tmp_path, raw)
    config = load_config(path)
    locked, broken, fine = (config.run("gru", seed).run_dir for seed in (0, 1, 2))
    broken.mkdir(parents=True)
    (broken / "checkpoints").write_text("a file where the checkpoint folder goes")
    locked.mkdir(parents=True)
    with RunLock(locked, "gru/seed_0"):
        status = main(["compare", str(path), "--workers", "2"])
    captured = capsys.readouterr()
    assert status == 1  # one unexpected failure among them
    assert f"[gru/seed_0] FAILED: gru/seed_0 is being trained by pid {os.getpid()} on host {socket.gethostname()}" in captured.out
    assert "[gru/seed_1] FAILED: FileExistsError" in captured.out and (broken / "traceback.txt").exists()
    assert "3 runs: 1 completed, 2 failed" in captured.out
    assert "2 runs failed: gru/seed_0, gru/seed_1" in captured.err and "Traceback" not in captured.err
    assert read_run_info(fine)["status"] == "completed"
    assert "| gru (`MlpGruPolicy`) |" in (tmp_path / "runs" / "tiny" / "comparison.md").read_text()  # what finished


@pytest.mark.slow  # about 30 s: two worker processes trained until they have evaluated twice
def test_ctrl_c_stops_every_worker_and_keeps_their_checkpoints(tmp_path):
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    raw["train"].update(seeds=[0, 1], total_timesteps=1_000_000, eval_every=256)
    path = write_config(tmp_path, raw)
    process = subprocess.Popen(
        [sys.executable, "-m", "dream_rl", "train", str(path), "--workers", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    run_dirs = [tmp_path / "runs" / "tiny" / "gru" / f"seed_{seed}" for seed in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(len(read_csv(d / "eval.csv")) >= 2 if (d / "eval.csv").exists() else False for d in run_dirs):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "2 running runs saved their checkpoints" in err and "Traceback" not in err
    for run_dir in run_dirs:
        info = read_run_info(run_dir)
        assert info["status"] == "interrupted" and info["timesteps"] > 256
        assert (run_dir / "checkpoints" / f"rl_model_{info['timesteps']}_steps.zip").exists()
        assert not (run_dir / ".lock").exists()


# --------------------------------------------------------------------------------------------
# The run lock (issue 9, item 6)


def test_a_locked_run_is_refused_with_the_holder_and_the_way_on(tmp_path, capsys):
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    path = write_config(tmp_path, raw)
    run = load_config(path).run("gru", 0)
    run.run_dir.mkdir(parents=True)
    with RunLock(run.run_dir, run.name):
        with pytest.raises(RunLocked):
            train_run(run, log=lambda line: None)
        assert main(["train", str(path), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pid {os.getpid()} on host {socket.gethostname()}" in err
    assert "wait for it to finish" in err and "resumes" in err
    assert not (run.run_dir / "final_model.zip").exists()


def test_a_stale_lock_does_not_block(tmp_path):
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    run = validate_config(raw).run("gru", 0)
    run.run_dir.mkdir(parents=True)
    # a holder that was killed: it locked the run, then died without cleaning up
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from dream_rl.experiments.runlock import RunLock; "
         "RunLock(sys.argv[1], 'x').acquire(); print('locked', flush=True); time.sleep(60)", str(run.run_dir)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
        RunLock(run.run_dir, run.name).acquire()
    holder.kill()
    holder.wait()
    assert (run.run_dir / ".lock").exists()  # left behind by the dead process
    result = train_run(run, log=lambda line: None)
    assert result.status == "completed" and not (run.run_dir / ".lock").exists()


# --------------------------------------------------------------------------------------------
# Ray


def test_ray_local_trains_the_runs(tmp_path, capsys):
    pytest.importorskip("ray")
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    raw["train"].update(total_timesteps=64, eval_every=64)
    path = write_config(tmp_path, raw)
    assert main(["train", str(path), "--ray", "local", "train.seeds=[0,1]"]) == 0
    assert "2 runs: 2 completed" in capsys.readouterr().out
    for seed in (0, 1):
        run_dir = tmp_path / "runs" / "tiny" / "gru" / f"seed_{seed}"
        assert read_run_info(run_dir)["status"] == "completed"
        assert [int(row["timesteps"]) for row in read_csv(run_dir / "eval.csv")] == [0, 64]


# --------------------------------------------------------------------------------------------
# Issue 9: tracebacks that should be one line, report settings, TensorBoard after resume


def test_non_utf8_and_recursive_yaml_are_one_line_errors(tmp_path, capsys):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00 tiny\n")
    assert main(["train", str(binary)]) == 2
    err = capsys.readouterr().err
    assert "not a UTF-8 text file" in err and err.count("\n") == 1
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("a: &a [*a]\n")
    assert main(["train", str(recursive)]) == 2
    err = capsys.readouterr().err
    assert "recursive YAML anchor" in err and err.count("\n") == 1
    assert main(["train", str(write_config(tmp_path, base_config(tmp_path))), "name=&a [*a]"]) == 2
    assert "recursive YAML anchor" in capsys.readouterr().err


def test_evaluate_with_a_model_that_is_not_a_zip(tmp_path, capsys):
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    raw["train"]["total_timesteps"] = 64
    path = write_config(tmp_path, raw)
    assert main(["train", str(path), "--workers", "1"]) == 0
    capsys.readouterr()
    run_dir = tmp_path / "runs" / "tiny" / "gru" / "seed_0"
    assert main(["evaluate", str(run_dir), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err and "not a zip file" in err and "Traceback" not in err


def test_report_shows_the_settings_the_runs_were_trained_with_and_a_quoted_hint(tmp_path, capsys):
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    raw["train"]["total_timesteps"] = 128
    raw["output_dir"] = str(tmp_path / "my runs")
    path = write_config(tmp_path, raw)
    assert main(["compare", str(path), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir '{tmp_path}/my runs/tiny'" in out
    assert main(["report", str(path), "train.eval_episodes=99", "train.eval_every=7"]) == 0
    out = capsys.readouterr().out
    # neither override shows: the report states the settings the runs were trained with (a bare "99"
    # would also match a throughput or a temporary path)
    assert "evaluation: 4 greedy episodes every 128 steps" in out
    assert "99 greedy episodes" not in out and "every 7 steps" not in out


def scalar_steps(directory: Path) -> dict[str, list[int]]:
    """Steps of every scalar as TensorBoard shows them (all event files, purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return {tag: [event.step for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


@pytest.mark.parametrize("kill_without_checkpoint", [False, True])
def test_tensorboard_after_resume_is_monotonic_and_matches_eval_csv(tmp_path, kill_without_checkpoint):
    raw = base_config(tmp_path)
    raw["train"].update(total_timesteps=640, eval_every=256, checkpoint_every=256)
    run = validate_config(raw).run("gru", 0)
    with pytest.raises(TrainingInterrupted) as info:
        train_run(run, extra_callbacks=[InterruptAt(450)], log=lambda line: None)
    if kill_without_checkpoint:  # as after kill -9: the last checkpoint is the periodic one at 256
        info.value.checkpoint.unlink()
    train_run(run, log=lambda line: None)
    steps = scalar_steps(run.run_dir / "tb")
    assert {"train/loss", "eval/mean_return", "time/fps"} <= set(steps)
    for tag, tag_steps in steps.items():
        assert tag_steps == sorted(set(tag_steps)), f"{tag}: {tag_steps}"
    evaluations = [int(row["timesteps"]) for row in read_csv(run.run_dir / "eval.csv")]
    assert steps["eval/mean_return"] == evaluations == steps["eval/normalized_score"]


def test_quickstart_suite_config_is_valid():
    config = load_config(REPO / "configs" / "suite_quick.yaml")
    assert len(config.env_list) == 3 and len(config.policies) == 3 and len(config.train.seeds) == 3
    assert config.report.baseline == "lstm"
