"""``dream-rl evaluate --freeze-plasticity``: a trained DREAM run evaluated with its fast weights not
written; a run of another memory is refused in one line (exit code 2)."""

from __future__ import annotations

import pytest
import yaml

from dream_rl.cli import main
from dream_rl.experiments.runner import evaluate_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frozen")
    config = {
        "name": "tiny",
        "env": {"id": "dream_rl/MetaBandit-v0", "n_envs": 2},
        "algo": {"n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "policies": {
            "dream": {"policy": "MlpDreamPolicy",
                      "policy_kwargs": {"lstm_hidden_size": 8, "dream_kwargs": {"rank": 2, "surprise_gating": False}}},
            "lstm": {"policy": "MlpLstmPolicy", "policy_kwargs": {"lstm_hidden_size": 8}},
        },
        "train": {"total_timesteps": 64, "seeds": [0], "eval_every": 64, "eval_episodes": 2, "progress_bar": False},
        "output_dir": str(tmp / "runs"),
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--workers", "1", "--no-progress"]) == 0
    return tmp / "runs" / "tiny"


def test_frozen_evaluation_plays_without_the_write_and_restores_it(trained, capsys, monkeypatch):
    from dream_rl.dream.plasticity import dream_cells
    from dream_rl.experiments import runner

    seen = []
    original = runner.evaluate_policy

    def spy(model, *args, **kwargs):
        seen.append([cell.config.fast_weights for cell in dream_cells(model)])
        return original(model, *args, **kwargs)

    monkeypatch.setattr(runner, "evaluate_policy", spy)
    run_dir = trained / "dream" / "seed_0"
    plastic = evaluate_run(run_dir, episodes=6)
    frozen = evaluate_run(run_dir, episodes=6, freeze_plasticity=True)
    assert evaluate_run(run_dir, episodes=6) == plastic  # same episodes, same result: nothing left frozen
    assert seen[0] and all(seen[0]) and not any(seen[1]) and all(seen[2])
    assert frozen["episodes"] == 6
    assert main(["evaluate", str(run_dir), "--episodes", "2", "--freeze-plasticity"]) == 0
    assert "plasticity frozen" in capsys.readouterr().out


def test_freezing_a_memory_without_fast_weights_is_one_line(trained, capsys):
    assert main(["evaluate", str(trained / "lstm" / "seed_0"), "--episodes", "2", "--freeze-plasticity"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no DREAM cell" in err and "\n" not in err
