#!/usr/bin/env python
"""The fused GRU (dream_rl.torsos.gru_kernel) against nn.GRU and torch's fused nn.LSTM: forward+backward over
a sequence, and the single-step (T = 1) rollout latency. CPU, float32, one thread by default.

Every contender runs once per round, rounds interleaved, in one process; the table shows medians
of the process's CPU time per call (``time.process_time``): with one thread that is the wall time
of an idle machine, and it does not count the time other processes on a shared machine take
(``--clock wall`` measures wall time instead).
"before" is ``nn.GRU``; "after" is what the GRU torso runs by default (the C++ kernel where it
builds, else the pure-PyTorch kernel); "torch" is the pure-PyTorch kernel (the fallback). Target:
after/LSTM <= 1.0 at every size.

    python scripts/bench_gru.py            # about a minute
    python scripts/bench_gru.py --quick    # fewer rounds
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
from _bench import add_timing_arguments, apply_timing_arguments, interleaved  # noqa: E402
from torch import nn  # noqa: E402

from dream_rl.experiments.machine import describe_machine  # noqa: E402
from dream_rl.torsos import gru_kernel  # noqa: E402

# (B, I, H): the sizes
SIZES = [(8, 8, 64), (32, 8, 128), (8, 39, 256), (64, 8, 128)]
ROLLOUT = (8, 8, 64)


def train_step(module: nn.Module, B: int, I: int, H: int, T: int, backend: str | None) -> Callable[[], None]:
    """One forward+backward over (T, B, I) through ``module`` (nn.LSTM, or an nn.GRU run by ``backend``)."""
    x = torch.randn(T, B, I, requires_grad=True)
    g = torch.randn(T, B, H)
    layers = getattr(module, "num_layers", 1)

    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        if backend is None:
            out, _ = module(x)
        else:
            out, _ = gru_kernel.gru_forward(module, x, torch.zeros(layers, B, H), backend)  # type: ignore[arg-type]
        (out * g).sum().backward()

    return run


def rollout_step(module: nn.Module, B: int, I: int, H: int, backend: str | None) -> Callable[[], None]:
    """One T = 1 step without gradients, carrying the state."""
    x = torch.randn(1, B, I)
    h = torch.zeros(1, B, H)
    state: object = (h, h.clone()) if isinstance(module, nn.LSTM) else h

    def run() -> None:
        nonlocal state
        if backend is None:
            _, state = module(x, state)
        else:
            _, state = gru_kernel.gru_forward(module, x, state, backend)  # type: ignore[arg-type]

    return run


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def contenders_for(B: int, I: int, H: int, T: int | None) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    lstm, gru = nn.LSTM(I, H), nn.GRU(I, H)
    make = (lambda m, b: train_step(m, B, I, H, T, b)) if T is not None else (lambda m, b: rollout_step(m, B, I, H, b))
    return {"lstm": make(lstm, None), "before": make(gru, None), "torch": make(gru, "torch"),
            "after": make(gru, "auto")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_timing_arguments(parser)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu (process CPU time, default) or wall")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    rounds = apply_timing_arguments(args)
    T = args.seq_len
    native = gru_kernel.native_kernel() is not None
    clock = CLOCKS[args.clock]

    info = describe_machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    print(f"GRU forward+backward over T={T}, float32, {args.clock} time, median of {rounds} interleaved rounds",
          flush=True)
    header = (f"{'B, I, H':>12} | {'LSTM':>7} | {'nn.GRU':>7} | {'torch':>7} | {'after':>7} | "
              f"{'nn.GRU/LSTM':>11} | {'after/LSTM':>10} | {'speed-up':>8}")
    print(header + "\n" + "-" * len(header), flush=True)
    results: dict = {"machine": info, "clock": args.clock, "seq_len": T, "rounds": rounds, "native": native,
                     "sizes": [], "rollout": None}
    for B, I, H in SIZES:
        ms = {k: 1e3 * v for k, v in interleaved(contenders_for(B, I, H, T), rounds, clock=clock).items()}
        print(f"{f'{B}, {I}, {H}':>12} | {ms['lstm']:7.2f} | {ms['before']:7.2f} | {ms['torch']:7.2f} | "
              f"{ms['after']:7.2f} | {ms['before'] / ms['lstm']:10.2f}x | {ms['after'] / ms['lstm']:9.2f}x | "
              f"{ms['before'] / ms['after']:7.1f}x", flush=True)
        results["sizes"].append({"B": B, "I": I, "H": H, "ms": ms})
    after = "C++ kernel" if native else "pure PyTorch: no C++ kernel here"
    print(f"(ms; nn.GRU = before, after = the GRU torso's default ({after}),"
          " torch = pure-PyTorch kernel, speed-up = nn.GRU/after)")

    B, I, H = ROLLOUT
    with torch.no_grad():
        us = {k: 1e6 * v for k, v in interleaved(contenders_for(B, I, H, None), rounds, calls=200, clock=clock).items()}
    print(f"\nrollout step (T=1, B={B}, I={I}, H={H}, no_grad), µs per call: "
          + ", ".join(f"{k} {v:.1f}" for k, v in us.items()) + f"; after/LSTM {us['after'] / us['lstm']:.2f}x")
    results["rollout"] = {"B": B, "I": I, "H": H, "us": us}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
