"""What the benchmark scripts share: interleaved timing and the fused nn.LSTM they compare against.

Imported by ``scripts/bench_*.py`` (run as ``python scripts/bench_x.py``, so this folder is on the path).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """--quick, --rounds, --seq-len and --threads, as every torso benchmark takes them."""
    parser.add_argument("--quick", action="store_true", help="fewer rounds (5 instead of 15)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 15)")
    parser.add_argument("--seq-len", type=int, default=128, help="training sequence length T (default 128)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")


def apply_timing_arguments(args: argparse.Namespace) -> int:
    """Set torch's thread count from ``args`` and return the number of rounds."""
    torch.set_num_threads(args.threads)
    return args.rounds or (5 if args.quick else 15)


def interleaved(contenders: dict[str, Callable[[], None]], rounds: int, calls: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds per call of each contender, one batch of ``calls`` each per round."""
    for fn in contenders.values():  # warm-up (also builds the C++ kernels, allocator pools, ...)
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = clock()
            for _ in range(calls):
                fn()
            times[name].append((clock() - start) / calls)
    return {name: statistics.median(values) for name, values in times.items()}


def lstm_train(B: int, I: int, H: int, T: int) -> Callable[[], None]:
    """Fused ``nn.LSTM`` forward+backward over (T, B, I) inputs, loss = random projection of the outputs."""
    lstm = nn.LSTM(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    g = torch.randn(T, B, H)

    def run() -> None:
        lstm.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = lstm(x)
        (out * g).sum().backward()

    return run


def lstm_rollout(B: int, I: int, H: int) -> Callable[[], None]:
    """One ``nn.LSTM`` step (T = 1) without gradients, carrying the state."""
    lstm = nn.LSTM(I, H)
    x = torch.randn(1, B, I)
    state = (torch.zeros(1, B, H), torch.zeros(1, B, H))

    def run() -> None:
        nonlocal state
        with torch.no_grad():
            _, state = lstm(x, state)

    return run
