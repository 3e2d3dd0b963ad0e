"""The rl-zoo3 recipe of the README: dream-rl policies and envs through `python -m rl_zoo3.train`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rl_zoo3")

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "configs" / "rl_zoo3" / "ppo_lstm.yml"
# The shipped hyperparameters, shrunk to seconds: 2 envs x 32 steps, 256 steps in all.
TINY = ["-n", "256", "--eval-freq", "-1", "--hyperparams", "n_envs:2", "n_steps:32", "batch_size:32", "n_epochs:1",
        "policy_kwargs:dict(lstm_hidden_size=16,dream_kwargs=dict(rank=4))"]


def _zoo_train(log_dir: Path, conf: Path, env_id: str = "dream_rl/TMaze-v0") -> Path:
    """Run the README's command in a fresh interpreter; return the saved model."""
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_lstm", "--env", env_id,
               "--gym-packages", "dream_rl", "-conf", str(conf), "-f", str(log_dir), "--seed", "0", *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=log_dir, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (model,) = log_dir.glob(f"ppo_lstm/{env_id.replace('/', '-')}_1/{env_id.replace('/', '-')}.zip")
    return model


def _load_and_act(model_path: Path, policy_class_name: str) -> None:
    import gymnasium as gym
    import numpy as np
    from sb3_contrib import RecurrentPPO

    import dream_rl  # noqa: F401

    model = RecurrentPPO.load(model_path, device="cpu")
    assert type(model.policy).__name__ == policy_class_name
    assert model.num_timesteps >= 256
    env = gym.make("dream_rl/TMaze-v0", corridor_length=20)
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs, state=None, episode_start=np.array([True]), deterministic=True)
    assert env.action_space.contains(int(action)) and state is not None


def test_rl_zoo3_trains_dream_policy_by_dotted_name(tmp_path):
    assert yaml.safe_load(CONF.read_text())["dream_rl/TMaze-v0"]["policy"] == "dream_rl.MlpDreamPolicy"
    model = _zoo_train(tmp_path, CONF)
    _load_and_act(model, "MlpDreamPolicy")
    saved = (model.parent / "dream_rl-TMaze-v0" / "config.yml").read_text()
    assert "dream_rl.MlpDreamPolicy" in saved and "corridor_length" in saved


def test_rl_zoo3_trains_dream_policy_by_alias(tmp_path):
    """`policy: MlpDreamPolicy`: rl-zoo3 passes a name without a dot to RecurrentPPO as a string,
    which resolves it through RecurrentPPO.policy_aliases once dream_rl is imported."""
    conf = yaml.safe_load(CONF.read_text())
    for hyperparams in conf.values():
        hyperparams["policy"] = "MlpDreamPolicy"
    path = tmp_path / "alias.yml"
    path.write_text(yaml.safe_dump(conf))
    _load_and_act(_zoo_train(tmp_path, path), "MlpDreamPolicy")
