#!/usr/bin/env python
"""Recurrent PPO side by side with Memorax on one CPU: training steps/s and returns, same settings.

The setting of issue #23: CartPole with the velocities hidden, a GRU of width 64, ``n_envs`` x 128 steps
a rollout, 4 minibatches, 4 epochs, lr 3e-4, gamma 0.99, lambda 0.95, clip 0.2, entropy 0, 200k steps.

Contenders, each run in a fresh process, interleaved (for each round, n_envs and seed: one run of each):

* ``memorax``: Memorax 1.0.1's PPO on gymnax's ``CartPole-v1`` behind
  ``MaskObservationWrapper(mask_dims=[0, 2])``. Runs only when ``--memorax-python`` (default
  ``/work/memorax-venv/bin/python`` or ``$MEMORAX_PYTHON``) is an interpreter that imports ``memorax``
  and ``gymnax``; it is never a dependency of dream-rl::

      python3 -m venv /work/memorax-venv && /work/memorax-venv/bin/pip install memorax==1.0.1 gymnax

  gymnax 1.0.1's ``step`` returns 6 values and Memorax's PPO takes 5: an adapter passes
  ``terminated or truncated`` as ``done`` (Memorax counts the time limit as terminal). Networks as in
  dream-rl's policy: GRU(64) -> MLP 64-64 tanh -> head, separate actor and critic, each with its own
  Adam (eps 1e-5) after global-norm clipping at 0.5; advantages normalised over the rollout. XLA is
  asked for one thread. Its compile time is measured apart and not counted in the training rate.
* ``sequence``: dream-rl's default path, ``SequencePPO("MlpGruPolicy")`` on the batched VecEnv
  (:mod:`dream_rl.envs.vector`); ``--grad-clip separate`` clips the critic's gradients apart (what
  the 64-env setting needs to learn at all; the default ``joint`` is RecurrentPPO's).
* ``recurrent``: sb3-contrib's ``RecurrentPPO("MlpGruPolicy")`` on SB3's ``DummyVecEnv`` (the path
  before).

Training steps/s are env steps per CPU second of the training call (process CPU time: every contender
runs its envs in its own process; on a shared machine, time slicing by other processes does not
inflate it the way it inflates wall time, which is printed too). Returns: mean of 10 deterministic
episodes after training. The CPU model and the load average (before and after) are printed.

    python scripts/bench_peers.py                      # 2 rounds x 3 seeds x (8, 64) envs, 200k steps
    python scripts/bench_peers.py --quick              # 1 round, seed 0, 50k steps
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MEMORAX_PYTHON = os.environ.get("MEMORAX_PYTHON", "/work/memorax-venv/bin/python")
CONTENDERS = ("memorax", "sequence", "recurrent")
LABELS = {"memorax": "Memorax 1.0.1 PPO", "sequence": "dream-rl SequencePPO", "recurrent": "sb3-contrib RecurrentPPO"}
HYPER = dict(n_steps=128, minibatches=4, epochs=4, lr=3e-4, gamma=0.99, gae_lambda=0.95, clip=0.2, ent=0.0, hidden=64)


# ------------------------------------------------------------------------------------------ children


def memorax_child(n_envs: int, seed: int, steps: int) -> dict[str, Any]:
    """Memorax's PPO (in the Memorax interpreter: imports nothing of dream-rl)."""
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import flax.linen as nn
    import gymnax
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from memorax.algorithms import PPO, PPOConfig
    from memorax.networks import MLP, RNN, FeatureExtractor, Identity, Network, heads
    from memorax.utils.wrappers import GymnaxWrapper, MaskObservationWrapper

    class FiveValueStep(GymnaxWrapper):
        """gymnax 1.0.1's (obs, state, reward, terminated, truncated, info) as the 5 values Memorax takes."""

        def step(self, key, state, action, params=None):  # noqa: ANN001, ANN201
            obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
            return obs, state, reward, jnp.logical_or(terminated, truncated), info

    class MlpHead(nn.Module):
        widths: tuple
        head: nn.Module

        @nn.compact
        def __call__(self, x, **kwargs):  # noqa: ANN001, ANN201
            return self.head(MLP(self.widths, activation=nn.tanh)(x), **kwargs)

        def loss(self, *args):  # noqa: ANN002, ANN201
            return self.head.loss(*args)

    env, params = gymnax.make("CartPole-v1")
    env = MaskObservationWrapper(FiveValueStep(env), mask_dims=[0, 2])
    cfg = PPOConfig(
        name="ppo", num_envs=n_envs, num_eval_envs=10, num_steps=HYPER["n_steps"], gamma=HYPER["gamma"],
        gae_lambda=HYPER["gae_lambda"], num_minibatches=HYPER["minibatches"], update_epochs=HYPER["epochs"],
        normalize_advantage=True, clip_coef=HYPER["clip"], clip_vloss=False, ent_coef=HYPER["ent"], vf_coef=0.5,
    )  # fmt: skip

    def network(head: nn.Module) -> Network:
        return Network(feature_extractor=FeatureExtractor(observation_extractor=Identity()),
                       torso=RNN(cell=nn.GRUCell(HYPER["hidden"])), head=MlpHead((64, 64), head))

    def optimizer() -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(0.5), optax.adam(HYPER["lr"], eps=1e-5))

    agent = PPO(cfg=cfg, env=env, env_params=params, actor_network=network(heads.Categorical(action_dim=2)),
                critic_network=network(heads.VNetwork()), actor_optimizer=optimizer(), critic_optimizer=optimizer())
    steps = steps // (n_envs * HYPER["n_steps"]) * n_envs * HYPER["n_steps"]  # whole updates
    key, state = agent.init(jax.random.key(seed))
    wall, cpu = time.perf_counter(), time.process_time()
    compiled = PPO.train.lower(agent, key, state, steps).compile()
    compile_wall, compile_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    key, state, _ = jax.block_until_ready(compiled(key, state))
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, transitions = agent.evaluate(key, state, 500, deterministic=True)
    reward, done = np.asarray(transitions.reward), np.asarray(transitions.done)  # (500, 10)
    first_end = done.argmax(axis=0)
    returns = [float(reward[: first_end[i] + 1, i].sum()) for i in range(reward.shape[1])]
    return dict(steps=steps, train_cpu=train_cpu, train_wall=train_wall, compile_cpu=compile_cpu,
                compile_wall=compile_wall, eval_return=float(np.mean(returns)))


def dream_child(kind: str, n_envs: int, seed: int, steps: int, grad_clip: str = "joint") -> dict[str, Any]:
    """dream-rl's SequencePPO (batched env) or sb3-contrib's RecurrentPPO (DummyVecEnv)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import dream_rl  # noqa: F401  (registers the suite ids and the policy names)
    from dream_rl.envs.vector import make_batched_vec_env
    from dream_rl.sb3 import SequencePPO

    torch.set_num_threads(1)
    env_id = "dream_rl/CartPoleNoVel-v0"
    extra: dict[str, Any] = {}
    if kind == "sequence":
        env, algo, extra = make_batched_vec_env(env_id, n_envs, seed=seed), SequencePPO, {"grad_clip": grad_clip}
    else:
        env, algo = make_vec_env(env_id, n_envs=n_envs, seed=seed), RecurrentPPO
    model = algo(
        "MlpGruPolicy", env, n_steps=HYPER["n_steps"], batch_size=n_envs * HYPER["n_steps"] // HYPER["minibatches"],
        n_epochs=HYPER["epochs"], learning_rate=HYPER["lr"], gamma=HYPER["gamma"], gae_lambda=HYPER["gae_lambda"],
        clip_range=HYPER["clip"], ent_coef=HYPER["ent"], policy_kwargs=dict(lstm_hidden_size=HYPER["hidden"]),
        seed=seed, device="cpu", **extra,
    )  # fmt: skip
    steps = steps // (n_envs * HYPER["n_steps"]) * n_envs * HYPER["n_steps"]
    wall, cpu = time.perf_counter(), time.process_time()
    model.learn(steps)
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 1000)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True, return_episode_rewards=True)
    return dict(steps=steps, train_cpu=train_cpu, train_wall=train_wall, eval_return=float(np.mean(returns)))


# ------------------------------------------------------------------------------------------ driver


def memorax_available(python: str) -> str | None:
    """None if ``python`` imports memorax and gymnax, else why not."""
    if not Path(python).exists():
        return f"no interpreter at {python}"
    probe = subprocess.run([python, "-c", "import memorax, gymnax; print(memorax.__file__)"], capture_output=True,
                           text=True, timeout=300)
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


def run_child(python: str, kind: str, n_envs: int, seed: int, steps: int, timeout: float,
              grad_clip: str = "joint") -> dict[str, Any] | None:
    cmd = [python, str(Path(__file__).resolve()), "--child", kind, "--n-envs", str(n_envs), "--seed", str(seed),
           "--steps", str(steps), "--grad-clip", grad_clip]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    print(f"  {kind} at {n_envs} envs, seed {seed} failed:\n{proc.stderr[-1500:]}", file=sys.stderr)
    return None


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, seed 0, 50k steps")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--n-envs", default="8,64", help="comma-separated env counts (default 8,64)")
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default 200000)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"from {', '.join(CONTENDERS)}")
    parser.add_argument("--memorax-python", default=DEFAULT_MEMORAX_PYTHON,
                        help="an interpreter with memorax==1.0.1 and gymnax (default $MEMORAX_PYTHON or "
                        "/work/memorax-venv/bin/python); the Memorax runs are skipped without one")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run (default 3600)")
    parser.add_argument("--grad-clip", choices=["joint", "separate"], default="joint",
                        help="SequencePPO's gradient clipping (default joint, RecurrentPPO's; separate clips the "
                        "critic apart, which the 64-env setting needs to learn: see dream_rl.sb3.ppo)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's result to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n_envs = int(args.n_envs)
        result = (memorax_child(n_envs, args.seed, args.steps) if args.child == "memorax"
                  else dream_child(args.child, n_envs, args.seed, args.steps, args.grad_clip))
        print(json.dumps(result))
        return

    rounds = args.rounds or (1 if args.quick else 2)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    steps = args.steps or (50_000 if args.quick else 200_000)
    env_counts = [int(n) for n in args.n_envs.split(",")]
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    if "memorax" in contenders:
        why = memorax_available(args.memorax_python)
        if why:
            print(f"Memorax runs skipped: {why} (see this script's docstring to install it apart)")
            contenders.remove("memorax")

    print(f"machine: {machine_line()}; load average before: {load_average()}", flush=True)
    print(f"CartPole without velocities, GRU 64, n_steps 128, 4 minibatches, 4 epochs, lr 3e-4, {steps} steps, "
          f"SequencePPO grad_clip={args.grad_clip}; "
          f"{rounds} round(s) x seeds {seeds} x n_envs {env_counts}, contenders interleaved", flush=True)
    results: list[dict[str, Any]] = []
    for round_index in range(rounds):
        for n_envs in env_counts:
            for seed in seeds:
                for kind in contenders:
                    python = args.memorax_python if kind == "memorax" else sys.executable
                    result = run_child(python, kind, n_envs, seed, steps, args.timeout, args.grad_clip)
                    if result is None:
                        continue
                    result.update(kind=kind, n_envs=n_envs, seed=seed, round=round_index)
                    results.append(result)
                    extra = (f", compile {result['compile_wall']:.1f} s wall" if "compile_wall" in result else "")
                    print(f"  round {round_index} n_envs {n_envs:>3} seed {seed} {LABELS[kind]:>26}: "
                          f"{result['steps'] / result['train_cpu']:8.0f} steps/s (CPU), "
                          f"{result['steps'] / result['train_wall']:8.0f} (wall){extra}, return {result['eval_return']:.0f}",
                          flush=True)
    print(f"load average after: {load_average()}\n")
    header = f"{'n_envs':>6} | " + " | ".join(f"{LABELS[k]:>26}" for k in contenders)
    print("median training steps/s (CPU time), over seeds and rounds\n" + header + "\n" + "-" * len(header))
    rates: dict[tuple[int, str], float] = {}
    for n_envs in env_counts:
        cells = []
        for kind in contenders:
            runs = [r["steps"] / r["train_cpu"] for r in results if r["n_envs"] == n_envs and r["kind"] == kind]
            rates[n_envs, kind] = statistics.median(runs) if runs else float("nan")
            cells.append(f"{rates[n_envs, kind]:26.0f}")
        print(f"{n_envs:>6} | " + " | ".join(cells))
    if "sequence" in contenders:
        print("\nratios (same machine, same rounds):")
        for n_envs in env_counts:
            parts = [f"SequencePPO / {LABELS[k]} = {rates[n_envs, 'sequence'] / rates[n_envs, k]:.2f}x"
                     for k in contenders if k != "sequence"]
            print(f"  {n_envs} envs: " + "; ".join(parts))
    print("\ndeterministic return after training (mean of 10 episodes), per seed (mean over rounds):")
    for n_envs in env_counts:
        for kind in contenders:
            per_seed = []
            for seed in seeds:
                runs = [r["eval_return"] for r in results if (r["n_envs"], r["kind"], r["seed"]) == (n_envs, kind, seed)]
                per_seed.append(f"{statistics.mean(runs):.0f}" if runs else "-")
            print(f"  {n_envs:>3} envs {LABELS[kind]:>26}: {' / '.join(per_seed)}")
    compile_runs = [r["compile_wall"] for r in results if r["kind"] == "memorax"]
    if compile_runs:
        print(f"\nMemorax compile time (not in the rates above): median {statistics.median(compile_runs):.1f} s wall")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "steps": steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
