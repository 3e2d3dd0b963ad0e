#!/usr/bin/env python
"""End-to-end RecurrentPPO throughput: MlpDreamPolicy against MlpLstmTorsoPolicy, plain PPO MlpPolicy
(no memory), MlpGruPolicy and sb3-contrib's stock MlpLstmPolicy, same hyperparameters (n_steps 128,
batch 256, 10 epochs), on masked-velocity CartPole, 8 envs, width 64, one thread. ``--profile KIND``
instead breaks one training update of KIND down by where its time goes (cProfile).

The models are built once and trained in interleaved rounds in one process (each round: every
policy learns ``--steps`` env steps, timed); the table shows median env steps/s, the share of time
in rollouts and in training updates, and the ratio to the LSTM. Then each policy's peak memory
during one training update (``model.train()``: n_epochs over a rollout) is measured in a fresh
subprocess, after a warm-up update: the peak of the C heap's in-use bytes (glibc ``mallinfo2``,
sampled after every aten op through a ``TorchDispatchMode``, so forward, backward and optimizer
are covered) minus the in-use bytes before the update. That counts tensors and their allocator
overhead, not memory the allocator keeps cached. Without glibc it falls back to the rise of the
peak resident set size (VmHWM reset through /proc/self/clear_refs), which a warmed-up allocator
mostly hides.

    python scripts/bench_ppo.py            # a few minutes
    python scripts/bench_ppo.py --quick
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import dream_rl  # noqa: E402,F401  (registers the dream_rl/ env ids)
from dream_rl.experiments.machine import describe_machine  # noqa: E402

ENV_ID = "dream_rl/CartPoleNoVel-v0"
POLICY_NAMES = {"ppo": "PPO MlpPolicy (no memory)", "lstm": "MlpLstmPolicy (sb3-contrib)",
                "lstm-torso": "MlpLstmTorsoPolicy", "dream": "MlpDreamPolicy", "gru": "MlpGruPolicy",
                "dream-ref": "MlpDreamPolicy, reference loop"}


class _NoVelocity(gym.ObservationWrapper):
    """CartPole-v1 keeping cart position and pole angle (indices 0 and 2): the fallback when the
    suite's id is not registered."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        box = env.observation_space
        self.observation_space = gym.spaces.Box(box.low[[0, 2]], box.high[[0, 2]], dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[[0, 2]].astype(np.float32)


def make_env(env_id: str, n_envs: int, seed: int):
    from stable_baselines3.common.env_util import make_vec_env

    if env_id in gym.registry:
        return make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if env_id != ENV_ID:
        raise SystemExit(f"unknown env id {env_id!r}")
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed, wrapper_class=_NoVelocity)


def make_model(kind: str, args: argparse.Namespace):
    from sb3_contrib import RecurrentPPO

    hyper = dict(n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs, seed=args.seed,
                 device="cpu", verbose=0)
    if kind == "ppo":  # plain PPO, same widths (net_arch 64-64 by default) and hyperparameters, no memory
        from stable_baselines3 import PPO

        return PPO("MlpPolicy", make_env(args.env, args.n_envs, args.seed), **hyper)
    policy_kwargs: dict[str, Any] = dict(lstm_hidden_size=args.hidden)
    if kind == "lstm":
        policy: Any = "MlpLstmPolicy"
    elif kind in ("dream", "dream-ref"):
        from dream_rl import MlpDreamPolicy

        policy = MlpDreamPolicy
        policy_kwargs["dream_kwargs"] = dict(rank=args.rank)
    elif kind == "gru":
        from dream_rl import MlpGruPolicy

        policy = MlpGruPolicy
    elif kind == "lstm-torso":
        from dream_rl import MlpLstmTorsoPolicy

        policy = MlpLstmTorsoPolicy
    else:
        raise SystemExit(f"unknown policy {kind!r}; choose from {', '.join(POLICY_NAMES)}")
    env = make_env(args.env, args.n_envs, args.seed)
    model = RecurrentPPO(policy, env, policy_kwargs=policy_kwargs, **hyper)
    if kind == "dream-ref":  # "before": the eager reference step loop in every DREAM cell
        from dream_rl import DREAMCell

        for module in model.policy.modules():
            if isinstance(module, DREAMCell):
                module.sequence_backend = "reference"
    return model


def machine() -> dict:
    import sb3_contrib
    import stable_baselines3

    return {**describe_machine(), "sb3": stable_baselines3.__version__, "sb3_contrib": sb3_contrib.__version__}


class _PhaseTimer:
    """Wraps a model's collect_rollouts and train to accumulate the time spent in each."""

    def __init__(self, model: Any) -> None:
        self.rollout = self.train = 0.0
        self.clock = time.perf_counter
        collect, train = model.collect_rollouts, model.train

        def timed_collect(*a: Any, **k: Any) -> Any:
            start = self.clock()
            try:
                return collect(*a, **k)
            finally:
                self.rollout += self.clock() - start

        def timed_train(*a: Any, **k: Any) -> Any:
            start = self.clock()
            try:
                return train(*a, **k)
            finally:
                self.train += self.clock() - start

        model.collect_rollouts, model.train = timed_collect, timed_train


# ------------------------------------------------------------------------------------ memory


def _rss_kib() -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) in KiB from /proc/self/status, or (None, None)."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)), int(re.search(r"VmHWM:\s+(\d+)", text).group(1))
    except (OSError, AttributeError):
        return None, None


def _heap_in_use() -> Any:
    """A function returning the C heap's in-use bytes (glibc mallinfo2), or None."""
    import ctypes
    import ctypes.util

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2

    def in_use() -> int:
        info = fn()
        return info.uordblks + info.hblkhd  # allocated chunks + mmapped chunks

    return in_use


def memory_child(kind: str, args: argparse.Namespace) -> None:
    """In a fresh process: one warm-up learn (a rollout and an update), one more rollout, then the
    peak memory during one training update. Prints one JSON line."""
    import gc

    from torch.utils._python_dispatch import TorchDispatchMode

    torch.set_num_threads(args.threads)
    model = make_model(kind, args)
    model.learn(args.n_envs * model.n_steps)  # allocator pools, Adam state, the C++ kernel
    _, callback = model._setup_learn(model.n_steps * args.n_envs, callback=None, reset_num_timesteps=False)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    gc.collect()
    in_use = _heap_in_use()
    if in_use is not None:

        class PeakHeap(TorchDispatchMode):
            peak = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                PeakHeap.peak = max(PeakHeap.peak, in_use())
                return out

        before = PeakHeap.peak = in_use()
        with PeakHeap():
            model.train()
        rise, method = (PeakHeap.peak - before) / 2**20, "heap in use (mallinfo2)"
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
        before, _ = _rss_kib()
        model.train()
        _, peak = _rss_kib()
        rise, method = (peak - before) / 1024, "peak RSS (VmHWM)"
    print(json.dumps({"kind": kind, "peak_rise_mib": rise, "method": method}))


def measure_memory(kind: str, args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", kind, "--env", args.env,
           "--n-envs", str(args.n_envs), "--hidden", str(args.hidden), "--rank", str(args.rank),
           "--threads", str(args.threads), "--seed", str(args.seed), "--n-steps", str(args.n_steps),
           "--batch-size", str(args.batch_size), "--n-epochs", str(args.n_epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    print(f"memory measurement for {kind} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return None


# ----------------------------------------------------------------------------------- profile

# where a function's cumulative time is booked: the first group whose pattern matches its file and name
_PROFILE_GROUPS = [
    ("sequence kernels (dream_rl.dream.kernels, torsos.gru_kernel)", ("dream/kernels/", "gru_kernel.py")),
    ("torso and policy adapter (dream_rl)", ("dream_rl/",)),
    ("sb3-contrib / SB3 (buffer, loss, distributions)", ("sb3_contrib", "stable_baselines3")),
]


def profile_train(kind: str, args: argparse.Namespace) -> None:
    """cProfile one ``model.train()`` (after a warm-up) and print the top functions by internal time
    and the share of the time booked, by internal (self) time, to our code and to sb3/sb3-contrib.
    Self time spent in torch (operators, autograd, optimizer) is booked to torch."""
    import cProfile
    import pstats

    model = make_model(kind, args)
    model.learn(args.n_envs * model.n_steps)
    _, callback = model._setup_learn(model.n_steps * args.n_envs, callback=None, reset_num_timesteps=False)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    model.train()
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # internal times add up to the profiled total
    booked: dict[str, float] = {}
    for (filename, _, _name), (_, _, internal, _, _) in stats.stats.items():
        group = "torch and Python (operators, autograd, optimizer, builtins)"
        for label, patterns in _PROFILE_GROUPS:
            if any(p in filename for p in patterns):
                group = label
                break
        booked[group] = booked.get(group, 0.0) + internal
    print(f"{POLICY_NAMES[kind]}: one train() = {wall * 1e3:.0f} ms wall ({total * 1e3:.0f} ms profiled, "
          "by self time):")
    for group, seconds in sorted(booked.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds / total:6.1%}  {group}")
    print()
    stats.sort_stats("tottime").print_stats(25)


# -------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2048 steps instead of 3 of 4096")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="env steps per policy per round (default 4096)")
    parser.add_argument("--policies", default="ppo,lstm-torso,dream,gru,lstm",
                        help="comma-separated from ppo, lstm, lstm-torso, dream, gru, dream-ref (DREAM on the eager "
                        "reference loop: the 'before' figure; slow)")
    parser.add_argument("--n-steps", type=int, default=128, help="rollout length per env (default 128)")
    parser.add_argument("--batch-size", type=int, default=256, help="minibatch size (default 256)")
    parser.add_argument("--n-epochs", type=int, default=10, help="epochs per update (default 10)")
    parser.add_argument("--profile", default=None, metavar="KIND",
                        help="instead of the benchmark: profile one training update (model.train()) of KIND with "
                        "cProfile and print where its time goes")
    parser.add_argument("--env", default=ENV_ID, help=f"env id (default {ENV_ID})")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64, help="lstm_hidden_size of every policy (default 64)")
    parser.add_argument("--rank", type=int, default=8, help="DREAM fast-weight rank (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto",
                        help="wall: perf_counter; cpu: CPU time of this process (the envs run in it too), which "
                        "time-slicing by other processes on a shared machine does not inflate; auto (default): "
                        "cpu with one thread, wall with more")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args)
        return
    torch.set_num_threads(args.threads)
    if args.profile:
        profile_train(args.profile, args)
        return
    rounds = args.rounds or (2 if args.quick else 3)
    steps = args.steps or (2048 if args.quick else 4096)
    kinds = [k.strip() for k in args.policies.split(",") if k.strip()]

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    env_note = "" if args.env in gym.registry else " (fallback wrapper on CartPole-v1, obs [0, 2])"
    print(f"RecurrentPPO on {args.env}{env_note}, {args.n_envs} envs, lstm_hidden_size={args.hidden}, DREAM "
          f"rank={args.rank}, n_steps={args.n_steps}, batch_size={args.batch_size}, n_epochs={args.n_epochs}, "
          f"seed {args.seed}; {rounds} interleaved rounds of {steps} env steps per policy", flush=True)

    models = {kind: make_model(kind, args) for kind in kinds}
    timers = {kind: _PhaseTimer(model) for kind, model in models.items()}
    for model in models.values():  # warm-up: one rollout and one update each
        model.learn(args.n_envs * model.n_steps, reset_num_timesteps=False)
    clock_name = args.clock if args.clock != "auto" else ("cpu" if args.threads == 1 else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    for timer in timers.values():
        timer.clock = clock
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    phases: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind, model in models.items():
            timer = timers[kind]
            timer.rollout = timer.train = 0.0
            start = clock()
            model.learn(steps, reset_num_timesteps=False)
            elapsed = clock() - start
            rates[kind].append(steps / elapsed)
            phases[kind].append((timer.rollout / elapsed, timer.train / elapsed))

    results: dict[str, Any] = {"machine": info, "env": args.env, "rounds": rounds, "steps": steps,
                               "clock": clock_name, "policies": {}}
    print(f"(env steps per second of {clock_name} time)")
    torso_ref = statistics.median(rates["lstm-torso"]) if "lstm-torso" in rates else None
    ppo_ref = statistics.median(rates["ppo"]) if "ppo" in rates else None
    header = (f"{'policy':>30} | {'env steps/s':>11} | {'rollout':>7} | {'update':>6} | {'vs LstmTorso':>12} | "
              f"{'vs plain PPO':>12}")
    print(header + "\n" + "-" * len(header))
    for kind in kinds:
        rate = statistics.median(rates[kind])
        roll = statistics.median(p[0] for p in phases[kind])
        upd = statistics.median(p[1] for p in phases[kind])
        vs_torso = f"{rate / torso_ref:11.2f}x" if torso_ref else f"{'-':>12}"
        vs_ppo = f"{rate / ppo_ref:11.2f}x" if ppo_ref else f"{'-':>12}"
        print(f"{POLICY_NAMES[kind]:>30} | {rate:11.0f} | {roll:6.0%} | {upd:5.0%} | {vs_torso} | {vs_ppo}")
        results["policies"][kind] = {"steps_per_s": rate, "all_rounds": rates[kind], "rollout_share": roll,
                                     "update_share": upd}
    print("(rollout / update: share of the measured time spent collecting rollouts / in training updates)", flush=True)

    if not args.no_memory:
        print("\npeak memory of one training update (model.train(): n_epochs over one rollout), fresh process each:")
        for kind in kinds:
            mem = measure_memory(kind, args)
            if mem:
                print(f"{POLICY_NAMES[kind]:>30} | {mem['peak_rise_mib']:6.1f} MiB above the memory in use "
                      f"before the update ({mem['method']})", flush=True)
                results["policies"][kind]["memory"] = mem
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
