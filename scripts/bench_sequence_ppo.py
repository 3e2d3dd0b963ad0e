#!/usr/bin/env python
"""End-to-end recurrent PPO throughput against plain PPO: dream-rl's default training path
(``SequencePPO`` on the batched VecEnv) and sb3-contrib's ``RecurrentPPO`` on ``DummyVecEnv`` (the path
before), for the GRU, LSTM and DREAM torsos, each as a ratio to plain SB3 ``PPO("MlpPolicy")`` on the
fully observable CartPole-v1 with the same settings (issue #23's target: at least 0.6x).

Settings: ``n_envs`` x 128 steps a rollout, 4 minibatches, 4 epochs, width 64 (DREAM rank 8),
CartPole without velocities for the recurrent policies, one torch thread. The models are built once
and trained in interleaved rounds in one process (each round: every contender learns ``--rollouts``
rollouts, timed in CPU time of the process: the envs run in it too, and time slicing by other
processes on a shared machine does not inflate it). Plain PPO runs twice: on SB3's ``DummyVecEnv``
(what ``PPO("MlpPolicy", "CartPole-v1")`` builds) and on the same batched VecEnv as SequencePPO, so
the ratio is shown both against what a user gets and with the env's cost equal on both sides.

    python scripts/bench_sequence_ppo.py                  # 8 and 64 envs, 3 rounds
    python scripts/bench_sequence_ppo.py --quick --n-envs 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

import dream_rl  # noqa: E402,F401  (registers the dream_rl/ env ids and policy names)
from dream_rl.experiments.machine import describe_machine  # noqa: E402

NOVEL, FULL = "dream_rl/CartPoleNoVel-v0", "CartPole-v1"
TORSO_POLICIES = {"gru": ("MlpGruPolicy", {}), "lstm": ("MlpLstmTorsoPolicy", {}),
                  "dream": ("MlpDreamPolicy", {"dream_kwargs": {"rank": 8}})}


def contenders(torsos: list[str], before: bool) -> list[tuple[str, str, str]]:
    """(label, algorithm, torso or plain-PPO env kind)."""
    rows = [("PPO MlpPolicy, DummyVecEnv", "ppo", "dummy"), ("PPO MlpPolicy, batched env", "ppo", "batched")]
    for torso in torsos:
        rows.append((f"SequencePPO {TORSO_POLICIES[torso][0]}", "sequence", torso))
        if before:
            rows.append((f"RecurrentPPO {TORSO_POLICIES[torso][0]}", "recurrent", torso))
    return rows


def make_model(algo: str, what: str, n_envs: int, seed: int) -> Any:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from dream_rl.envs.vector import make_batched_vec_env
    from dream_rl.sb3 import SequencePPO

    hyper = dict(n_steps=128, batch_size=n_envs * 128 // 4, n_epochs=4, learning_rate=3e-4, gamma=0.99,
                 gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, seed=seed, device="cpu")
    if algo == "ppo":
        env = make_vec_env(FULL, n_envs=n_envs, seed=seed) if what == "dummy" else make_batched_vec_env(FULL, n_envs, seed)
        return PPO("MlpPolicy", env, **hyper)
    policy, extra = TORSO_POLICIES[what]
    policy_kwargs = dict(lstm_hidden_size=64, **extra)
    if algo == "sequence":
        return SequencePPO(policy, make_batched_vec_env(NOVEL, n_envs, seed), policy_kwargs=policy_kwargs, **hyper)
    return RecurrentPPO(policy, make_vec_env(NOVEL, n_envs=n_envs, seed=seed), policy_kwargs=policy_kwargs, **hyper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 rollouts instead of 3 of 4")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--rollouts", type=int, default=None, help="rollouts (and updates) per contender per round")
    parser.add_argument("--n-envs", default="8,64", help="comma-separated (default 8,64)")
    parser.add_argument("--torsos", default="gru,lstm,dream", help=f"from {', '.join(TORSO_POLICIES)}")
    parser.add_argument("--no-before", action="store_true", help="skip sb3-contrib's RecurrentPPO (the path before)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = args.rounds or (2 if args.quick else 3)
    rollouts = args.rollouts or (2 if args.quick else 4)
    torsos = [t.strip() for t in args.torsos.split(",") if t.strip()]
    unknown = sorted(set(torsos) - set(TORSO_POLICIES))
    if unknown:
        raise SystemExit(f"unknown torsos {unknown}; choose from {', '.join(TORSO_POLICIES)}")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in describe_machine().items()), flush=True)
    print(f"n_steps 128, 4 minibatches, 4 epochs, width 64; {rounds} interleaved rounds of {rollouts} rollouts; "
          "env steps per CPU second", flush=True)
    for n_envs in (int(n) for n in args.n_envs.split(",")):
        rows = contenders(torsos, not args.no_before)
        models = [make_model(algo, what, n_envs, args.seed) for _, algo, what in rows]
        steps = rollouts * n_envs * 128
        for model in models:  # warm-up: allocator pools, native kernels, Adam state
            model.learn(n_envs * 128, reset_num_timesteps=False)
        rates: list[list[float]] = [[] for _ in rows]
        for _ in range(rounds):
            for index, model in enumerate(models):
                start = time.process_time()
                model.learn(steps, reset_num_timesteps=False)
                rates[index].append(steps / (time.process_time() - start))
        medians = [statistics.median(r) for r in rates]
        ppo_dummy, ppo_batched = medians[0], medians[1]
        header = f"{'n_envs ' + str(n_envs):>36} | {'steps/s':>8} | {'/ PPO (DummyVecEnv)':>19} | {'/ PPO (batched env)':>19}"
        print("\n" + header + "\n" + "-" * len(header))
        for (label, _, _), rate in zip(rows, medians):
            print(f"{label:>36} | {rate:8.0f} | {rate / ppo_dummy:18.2f}x | {rate / ppo_batched:18.2f}x", flush=True)


if __name__ == "__main__":
    main()
