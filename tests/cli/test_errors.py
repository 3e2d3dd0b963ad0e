"""The command line on bad input (issue 21's CLI findings): one line on stderr and exit status 2,
or the behaviour a user asked for; and a run interrupted mid-rollout that resumes to the same
end as an uninterrupted one."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from dream_rl.cli import main
from dream_rl.experiments.config import ConfigError, apply_overrides, load_config, read_yaml, validate_config
from dream_rl.experiments.runner import TrainingInterrupted, read_run_info, train_run
from tests.experiments.test_experiments import InterruptAt, base_config, write_config

REPO = Path(__file__).resolve().parents[2]


def one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI (argparse's own errors included); exit 2, one line on stderr, no traceback."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def tiny(tmp_path: Path, **train: Any) -> dict[str, Any]:
    raw = base_config(tmp_path)
    raw["policies"] = {"gru": raw["policies"]["gru"]}
    raw["train"].update(train)
    return raw


# --------------------------------------------------------------------------------------------
# Paths


@pytest.mark.parametrize("output_dir", ["/proc/x", "a_file", "/dev/null"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_an_output_dir_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch, output_dir, dry_run):
    if output_dir.startswith("/") and not Path(output_dir).parent.exists():
        pytest.skip(f"no {Path(output_dir).parent} here")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    path = write_config(tmp_path, tiny(tmp_path))
    err = one_line_exit_2(["train", str(path), f"output_dir={output_dir}", *(["--dry-run"] if dry_run else [])], capsys)
    assert err.startswith("dream-rl train: error: output_dir: cannot ")
    assert "choose another output_dir" in err or "choose a folder you can write to" in err


def test_a_config_path_that_is_a_directory_says_so(tmp_path, capsys):
    err = one_line_exit_2(["train", str(tmp_path)], capsys)
    assert f"{tmp_path} is a directory, not a config file" in err


# --------------------------------------------------------------------------------------------
# Overrides


def test_a_train_budget_override_applies_to_every_env():
    raw_path = REPO / "configs" / "leaderboard.yaml"
    config = load_config(raw_path, ["train.total_timesteps=2048"], build_envs=False)
    assert {run.train.total_timesteps for run in config.runs()} == {2048}
    # an env's own override still wins, and eval_every works the same way
    config = load_config(raw_path, ["train.total_timesteps=2048", "envs.1.total_timesteps=4096", "train.eval_every=512"],
                         build_envs=False)
    budgets = {run.env.id: (run.train.total_timesteps, run.train.eval_every) for run in config.runs()}
    assert budgets.pop(config.envs[1].id) == (4096, 512)
    assert set(budgets.values()) == {(2048, 512)}
    # without the override, the per-env budgets stand
    per_env = {env["total_timesteps"] for env in read_yaml(raw_path)["envs"]}
    assert {run.train.total_timesteps for run in load_config(raw_path, build_envs=False).runs()} == per_env != {2048}


def test_the_budget_override_rule_is_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "train.total_timesteps (or train.eval_every) applies to every env" in " ".join(capsys.readouterr().out.split())


def test_env_null_removes_env_to_switch_forms(tmp_path):
    raw = apply_overrides(base_config(tmp_path), ["env=null", "envs=[{id: dream_rl/TMaze-v0, n_envs: 2}]"])
    assert "env" not in raw
    config = validate_config(raw)
    assert config.env is None and [env.id for env in config.envs] == ["dream_rl/TMaze-v0"]
    back = apply_overrides(raw, ["envs=null", "env={id: dream_rl/RepeatFirst-v0}"])
    assert "envs" not in back and validate_config(back).env.id == "dream_rl/RepeatFirst-v0"


@pytest.mark.parametrize("value", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system"])
def test_a_python_tag_in_an_override_gets_a_hint(value):
    with pytest.raises(ConfigError, match=r"YAML tag !!python/\S+ is not allowed: a config holds plain values only"):
        apply_overrides(base_config(), [f"algo.gamma={value}"])


# --------------------------------------------------------------------------------------------
# evaluate and report on what a run folder holds


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run trained to 128 steps (a checkpoint at 64): its run folder."""
    tmp_path = tmp_path_factory.mktemp("trained")
    config = validate_config(tiny(tmp_path, total_timesteps=128, eval_every=64, checkpoint_every=64))
    run = config.run("gru", 0)
    from dream_rl.experiments.launch import prepare_experiment

    prepare_experiment(config)
    train_run(run, log=lambda line: None)
    return run.run_dir


@pytest.mark.parametrize("seed", ["-5", "2**32", "x", str(2**32)])
def test_evaluate_seed_out_of_range_is_one_line(trained, capsys, seed):
    err = one_line_exit_2(["evaluate", str(trained), "--seed", seed], capsys)
    assert "argument --seed: expected an integer in [0, 2**32 - 1]" in err


@pytest.mark.parametrize("content, named", [
    ("timesteps,mean_return\n0,1\n", "no column 'mean_score'"),
    ("timesteps,mean_return,mean_score\n0,abc,0.1\n", "line 2: mean_return is 'abc', not a number"),
    ("timesteps,mean_return,mean_score\n64,1,0.1\n0,1,0.1\n", "line 3: timesteps 0 after 64"),
])
def test_report_on_a_malformed_eval_csv_is_one_line(trained, capsys, content, named):
    record = trained / "eval.csv"
    kept = record.read_bytes()
    try:
        record.write_text(content)
        err = one_line_exit_2(["report", str(trained.parents[1])], capsys)
        assert f"{record}: not an evaluation record written by dream-rl ({named})" in err
    finally:
        record.write_bytes(kept)


def test_a_corrupt_final_model_gets_the_same_advice_from_evaluate_and_train(trained, capsys, tmp_path):
    final = trained / "final_model.zip"
    kept = final.read_bytes()
    try:
        final.write_bytes(kept[:300])
        evaluate = one_line_exit_2(["evaluate", str(trained)], capsys)
        config_path = write_config(tmp_path, load_config(trained / "config.yaml").to_dict())
        train = one_line_exit_2(["train", str(config_path), "train.total_timesteps=192", "--workers", "1"], capsys)
        advice = evaluate.split("is unreadable")[1].split("); ", 1)[1]
        assert advice == train.split("is unreadable")[1].split("); ", 1)[1]
        assert "delete it" in advice and "--fresh" in advice
    finally:
        final.write_bytes(kept)
    # and the advice holds: without the final model, evaluate uses the checkpoint
    final.rename(trained / "final_model.bak")
    try:
        assert main(["evaluate", str(trained), "--episodes", "1"]) == 0
        assert "rl_model_64_steps.zip" in capsys.readouterr().out
    finally:
        (trained / "final_model.bak").rename(final)


def test_run_info_records_the_device_the_run_used(trained):
    assert read_run_info(trained)["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("dry_run", [True, False])
def test_cuda_without_cuda_is_refused(tmp_path, capsys, dry_run):
    path = write_config(tmp_path, tiny(tmp_path))
    err = one_line_exit_2(["train", str(path), "algo.device=cuda", *(["--dry-run"] if dry_run else [])], capsys)
    assert "algo.device: 'cuda', but" in err and "use algo.device=cpu" in err
    assert not (tmp_path / "runs" / "tiny" / "gru").exists()


# --------------------------------------------------------------------------------------------
# Experiment names


def test_a_second_config_under_an_existing_experiment_name_is_refused(tmp_path, capsys):
    raw = tiny(tmp_path, total_timesteps=64, eval_every=64)
    path = write_config(tmp_path, raw)
    assert main(["train", str(path), "--workers", "1"]) == 0
    capsys.readouterr()
    other = write_config(tmp_path, {**raw, "policies": {"lstm": "MlpLstmPolicy"}, "algo": {**raw["algo"], "n_epochs": 3}})
    err = one_line_exit_2(["train", str(other), "--workers", "1"], capsys)
    assert "holds experiment 'tiny' trained with another config (algo.n_epochs: 2 earlier, 3 now)" in err
    assert "another name (name=tiny-2)" in err and "--fresh" in err
    one_line_exit_2(["train", str(other), "--dry-run"], capsys)  # the dry run says so too
    # the first experiment's report is untouched
    assert "gru" in load_config(tmp_path / "runs" / "tiny" / "config.yaml", build_envs=False).policies
    # a compatible config (another policy, same algo and env) joins the experiment
    joined = write_config(tmp_path, {**raw, "policies": {"lstm": {"policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": 8}}}})
    assert main(["train", str(joined), "--workers", "1"]) == 0
    assert list(load_config(tmp_path / "runs" / "tiny" / "config.yaml", build_envs=False).policies) == ["gru", "lstm"]


# --------------------------------------------------------------------------------------------
# Ctrl-C in the middle of a rollout


def eval_steps(run_dir: Path) -> list[int]:
    with (run_dir / "eval.csv").open(newline="") as file:
        return [int(row["timesteps"]) for row in csv.DictReader(file)]


def test_interrupt_mid_rollout_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    """8 rollouts of 2 envs x 32 steps = 512 steps. Ctrl-C at step 300 (inside the rollout 256-320),
    then resume: the run ends at 512 (not 556), with the evaluation rows of an uninterrupted run."""
    settings = dict(total_timesteps=512, eval_every=128, checkpoint_every=128)
    whole = validate_config({**tiny(tmp_path, **settings), "name": "whole"}).run("gru", 0)
    assert train_run(whole, log=lambda line: None).timesteps == 512

    cut = validate_config({**tiny(tmp_path, **settings), "name": "cut"}).run("gru", 0)
    with pytest.raises(TrainingInterrupted) as info:
        train_run(cut, extra_callbacks=[InterruptAt(300)], log=lambda line: None)
    assert info.value.timesteps == 256 and info.value.checkpoint.name == "rl_model_256_steps.zip"
    assert read_run_info(cut.run_dir)["timesteps"] == 256
    result = train_run(cut, log=lambda line: None)
    assert result.timesteps == 512 and read_run_info(cut.run_dir)["timesteps"] == 512
    assert eval_steps(cut.run_dir) == eval_steps(whole.run_dir) == [0, 128, 256, 384, 512]


def test_a_resumed_run_with_nothing_left_adds_no_evaluation_row(tmp_path):
    """A run interrupted after its last update (a checkpoint at the budget, no final model) resumes,
    writes its final model, and does not evaluate again at the same step."""
    run = validate_config(tiny(tmp_path, total_timesteps=128, eval_every=64)).run("gru", 0)
    train_run(run, log=lambda line: None)
    (run.run_dir / "final_model.zip").rename(run.run_dir / "checkpoints" / "rl_model_128_steps.zip")
    info = read_run_info(run.run_dir)
    info["status"] = "interrupted"
    (run.run_dir / "run_info.json").write_text(json.dumps(info))
    before = eval_steps(run.run_dir)
    assert train_run(run, log=lambda line: None).timesteps == 128
    assert eval_steps(run.run_dir) == before == [0, 64, 128]
    assert (run.run_dir / "final_model.zip").exists()


# --------------------------------------------------------------------------------------------
# tune --storage


@pytest.mark.parametrize("storage, message", [
    ("/proc/x/study.log", "--storage /proc/x/study.log: cannot write into /proc/x"),
    ("notaurl", "--storage 'notaurl': expected an RDB URL"),
    ("a_file/study.db", "a_file is a file, not a folder"),
    ("journal:", "expected a file after journal:"),
])
def test_tune_storage_that_cannot_be_used_is_one_line(tmp_path, capsys, monkeypatch, storage, message):
    pytest.importorskip("optuna")
    if storage.startswith("/proc") and not Path("/proc").exists():
        pytest.skip("no /proc here")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    raw = tiny(tmp_path)
    raw["tune"] = {"space": {"algo.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}}}
    path = write_config(tmp_path, raw)
    err = one_line_exit_2(["tune", str(path), "--trials", "1", "--storage", storage], capsys)
    assert message in err
    assert not (tmp_path / "notaurl").exists()


# --------------------------------------------------------------------------------------------
# Other paths and values


@pytest.mark.parametrize("path, message", [("/dev/null", "is not a regular file"), ("big.yaml", "a config is a few KB")])
def test_a_config_that_is_not_a_small_regular_file_is_one_line(tmp_path, capsys, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    with open("big.yaml", "wb") as file:
        file.truncate(5_000_000)
    assert message in one_line_exit_2(["train", path], capsys)


@pytest.mark.parametrize("address", ["evilmod_21://x", "x", "ray://"])
def test_a_ray_address_that_ray_would_read_as_a_module_is_refused(tmp_path, capsys, address):
    path = write_config(tmp_path, tiny(tmp_path))
    err = one_line_exit_2(["train", str(path), "--ray", address], capsys)
    assert "expected local, auto, ray://HOST:PORT or HOST:PORT" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", ["[1, 2]", '{"steps_per_second": "abc", "timesteps": "x", "status": 5}', "not json"])
def test_report_and_train_read_a_foreign_run_info_as_absent(trained, capsys, tmp_path, content):
    info = trained / "run_info.json"
    kept = info.read_bytes()
    try:
        info.write_text(content)
        assert read_run_info(trained) == {}
        assert main(["report", str(trained.parents[1])]) == 0
        assert "Traceback" not in capsys.readouterr().err
    finally:
        info.write_bytes(kept)
