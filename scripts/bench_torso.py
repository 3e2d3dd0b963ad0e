#!/usr/bin/env python
"""DREAM sequence kernels against torch's fused nn.LSTM: forward+backward over a sequence, and the
single-step (T = 1) rollout latency. CPU, one thread by default.

Every contender runs once per round, rounds interleaved, in one process; the table shows medians.
"Before" is the eager reference step loop (``DREAMCell.reference_run_time_major``); "after" is
what ``run_time_major`` runs by default (the C++ kernel where it builds, else pure PyTorch); the
pure-PyTorch kernel (the fallback) is shown too.

    python scripts/bench_torso.py              # one thread, CPU-time clock, a minute or two
    python scripts/bench_torso.py --quick      # fewer rounds
    python scripts/bench_torso.py --threads 2  # DREAM and nn.LSTM both on 2 threads, wall clock
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
from _bench import add_timing_arguments, apply_timing_arguments, interleaved, lstm_rollout, lstm_train  # noqa: E402

from dream_rl.dream.cell import DREAMCell  # noqa: E402
from dream_rl.dream.config import DREAMConfig  # noqa: E402
from dream_rl.dream.kernels import dispatch  # noqa: E402
from dream_rl.experiments.machine import describe_machine  # noqa: E402

# (B, I, H, r): the four sizes; the rank is given for (8, 39, 256) only, the others are ours
SIZES = [(8, 8, 64, 8), (32, 8, 128, 16), (8, 39, 256, 16), (64, 8, 128, 16)]
ROLLOUT = (8, 8, 64, 8)


def dream_step(B: int, I: int, H: int, r: int, T: int, backend: str) -> Callable[[], None]:
    torch.manual_seed(0)
    cell = DREAMCell(DREAMConfig(input_dim=I, hidden_dim=H, rank=r))
    cell.sequence_backend = backend
    x = torch.randn(T, B, I, requires_grad=True)
    g = torch.randn(T, B, H)

    def run() -> None:
        cell.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = cell.run_time_major(x, cell.init_state(B))
        (out * g).sum().backward()

    return run


def dream_rollout(B: int, I: int, H: int, r: int, backend: str) -> Callable[[], None]:
    cell = DREAMCell(DREAMConfig(input_dim=I, hidden_dim=H, rank=r))
    cell.sequence_backend = backend
    x = torch.randn(1, B, I)
    state = cell.init_state(B)

    def run() -> None:
        nonlocal state
        _, state = cell.run_time_major(x, state)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow eager reference loop")
    parser.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto",
                        help="wall: perf_counter; cpu: CPU time of this thread (user + system), which time-slicing "
                        "by other processes on a shared machine does not inflate; auto (default): cpu with one "
                        "thread, wall with more (worker threads' time would not count)")
    parser.add_argument("--sizes", default=None, help="B,I,H,r;B,I,H,r;... instead of the default four")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    rounds = apply_timing_arguments(args)
    T = args.seq_len
    native = dispatch.native_available()
    clock_name = args.clock if args.clock != "auto" else ("cpu" if args.threads == 1 else "wall")
    clock = time.thread_time if clock_name == "cpu" else time.perf_counter
    sizes = SIZES if not args.sizes else [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";")]

    info = describe_machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    print(f"forward+backward over T={T}, float32, {args.threads} thread(s), median of {rounds} interleaved rounds, "
          f"{clock_name} clock", flush=True)
    header = f"{'B, I, H, r':>16} | {'LSTM':>8} | {'before':>8} | {'torch':>8} | {'after':>8} | {'after/LSTM':>10} | {'torch/LSTM':>10}"
    print(header + "\n" + "-" * len(header), flush=True)
    results: dict = {"machine": info, "seq_len": T, "rounds": rounds, "threads": args.threads, "clock": clock_name,
                     "sizes": [], "rollout": None}
    for B, I, H, r in sizes:
        contenders = {"lstm": lstm_train(B, I, H, T), "torch": dream_step(B, I, H, r, T, "torch"),
                      "after": dream_step(B, I, H, r, T, "auto")}
        if not args.no_reference:
            contenders["before"] = dream_step(B, I, H, r, T, "reference")
        ms = {k: 1e3 * v for k, v in interleaved(contenders, rounds, clock=clock).items()}
        before = f"{ms['before']:8.1f}" if "before" in ms else f"{'-':>8}"
        print(f"{f'{B}, {I}, {H}, {r}':>16} | {ms['lstm']:8.1f} | {before} | {ms['torch']:8.1f} | "
              f"{ms['after']:8.1f} | {ms['after'] / ms['lstm']:9.2f}x | {ms['torch'] / ms['lstm']:9.2f}x", flush=True)
        results["sizes"].append({"B": B, "I": I, "H": H, "r": r, "ms": ms})
    print("(ms; before = eager reference step loop, after = run_time_major default"
          f" ({'C++ kernel' if native else 'pure PyTorch: no C++ kernel here'}), torch = pure-PyTorch kernel)")

    B, I, H, r = ROLLOUT
    contenders = {"lstm": lstm_rollout(B, I, H), "torch": dream_rollout(B, I, H, r, "torch"),
                  "after": dream_rollout(B, I, H, r, "auto")}
    if not args.no_reference:
        contenders["before"] = dream_rollout(B, I, H, r, "reference")
    with torch.no_grad():
        us = {k: 1e6 * v for k, v in interleaved(contenders, rounds, calls=200, clock=clock).items()}
    print(f"\nrollout step (T=1, B={B}, I={I}, H={H}, r={r}, no_grad), µs per call: "
          + ", ".join(f"{k} {v:.1f}" for k, v in us.items()) + f"; after/LSTM {us['after'] / us['lstm']:.2f}x")
    results["rollout"] = {"B": B, "I": I, "H": H, "r": r, "us": us}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
