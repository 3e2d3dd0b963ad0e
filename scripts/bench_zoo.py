#!/usr/bin/env python
"""Every registered torso against torch's fused nn.LSTM, and the scan against the step loop.

Part 1, per size (B, I, H) in (8, 8, 64), (32, 8, 128), (8, 39, 256): forward+backward of each
torso over T = 128 steps (from the initial state, with an all-zero episode_starts tensor, as inside
a RecurrentPPO training sequence), and the rollout step (T = 1, no_grad, carrying the state), each
beside fused ``nn.LSTM`` doing the same. One thread; every contender runs once per round, rounds
interleaved, in one process; medians and ratios to the LSTM are printed side by side.

Part 2: one scan torso's forward+backward with the chunked scan of ``dream_rl.torsos.scan`` against
the same torso with ``linear_scan_sequential`` (the step loop under autograd) swapped in, at
T = 1, 4, 16, 64, 128, 256, to show from which T the scan wins.

    python scripts/bench_zoo.py                       # every torso, about two minutes
    python scripts/bench_zoo.py --torsos lru,ffm --sizes 8x8x64 --scan-torso none --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
from _bench import add_timing_arguments, apply_timing_arguments, interleaved, lstm_rollout, lstm_train  # noqa: E402

from dream_rl import TORSOS  # noqa: E402
from dream_rl.experiments.machine import describe_machine  # noqa: E402
from dream_rl.torsos import scan as scan_module  # noqa: E402
from dream_rl.torsos.scan import ScanTorso, linear_scan_sequential  # noqa: E402

SIZES = [(8, 8, 64), (32, 8, 128), (8, 39, 256)]
SCAN_LENGTHS = [1, 4, 16, 64, 128, 256]


def torso_train(name: str, B: int, I: int, H: int, T: int) -> Callable[[], None]:
    torch.manual_seed(0)
    torso = TORSOS[name](I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    g = torch.randn(T, B, H)
    starts = torch.zeros(T, B)
    state = torso.initial_state(B)

    def run() -> None:
        torso.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = torso(x, state, starts)
        (out * g).sum().backward()

    return run


def torso_rollout(name: str, B: int, I: int, H: int) -> Callable[[], None]:
    torch.manual_seed(0)
    torso = TORSOS[name](I, H)
    x = torch.randn(1, B, I)
    starts = torch.zeros(1, B)
    state = torso.initial_state(B)

    def run() -> None:
        nonlocal state
        with torch.no_grad():
            _, state = torso(x, state, starts)

    return run


def with_sequential_scan(name: str, fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run with the torso module's ``linear_scan`` replaced by the step loop."""
    module = sys.modules[TORSOS[name].__module__]

    def run() -> None:
        original = module.linear_scan
        module.linear_scan = linear_scan_sequential
        try:
            fn()
        finally:
            module.linear_scan = original

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torsos", default=None, help="comma-separated names (default: every registered torso)")
    add_timing_arguments(parser)
    parser.add_argument("--sizes", default=None, help="B,I,H triples as 8x8x64,32x8x128 (default: the three sizes)")
    parser.add_argument("--scan-torso", default="lru", help="the scan torso of part 2 (default lru); 'none' skips")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args()
    rounds = apply_timing_arguments(args)
    names = [n for n in (args.torsos.split(",") if args.torsos else TORSOS) if n]
    unknown = [n for n in names if n not in TORSOS]
    if unknown:
        parser.error(f"unknown torsos {unknown}; registered: {', '.join(TORSOS)}")
    try:
        sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")] if args.sizes else SIZES
    except ValueError:
        sizes = []
    if not sizes or any(len(size) != 3 or min(size) < 1 for size in sizes):
        parser.error(f"--sizes takes B x I x H triples of positive integers, e.g. 8x8x64,32x8x128; got {args.sizes!r}")
    T = args.seq_len
    info = describe_machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    print(f"float32, {args.threads} thread(s), median of {rounds} interleaved rounds; "
          f"fwd+bwd over T={T} in ms, rollout step (T=1, no_grad) in µs; ratios are torso / fused nn.LSTM", flush=True)
    results: dict = {"machine": info, "seq_len": T, "rounds": rounds, "sizes": [], "scan": None}
    for B, I, H in sizes:
        train = {"lstm": lstm_train(B, I, H, T), **{n: torso_train(n, B, I, H, T) for n in names}}
        ms = {k: 1e3 * v for k, v in interleaved(train, rounds).items()}
        step = {"lstm": lstm_rollout(B, I, H), **{n: torso_rollout(n, B, I, H) for n in names}}
        us = {k: 1e6 * v for k, v in interleaved(step, rounds, calls=50).items()}
        print(f"\n(B, I, H) = ({B}, {I}, {H}); fused LSTM: fwd+bwd {ms['lstm']:.2f} ms, rollout {us['lstm']:.1f} µs")
        header = f"{'torso':>18} | {'state':>6} | {'fwd+bwd ms':>10} | {'x LSTM':>7} | {'rollout µs':>10} | {'x LSTM':>7}"
        print(header + "\n" + "-" * len(header))
        for n in names:
            state = TORSOS[n](I, H).state_size
            print(f"{n:>18} | {state:>6} | {ms[n]:10.2f} | {ms[n] / ms['lstm']:6.2f}x | {us[n]:10.1f} | "
                  f"{us[n] / us['lstm']:6.2f}x", flush=True)
        results["sizes"].append({"B": B, "I": I, "H": H, "train_ms": ms, "rollout_us": us})

    if args.scan_torso != "none":
        name = args.scan_torso
        if name not in TORSOS or not issubclass(TORSOS[name], ScanTorso):
            parser.error(f"--scan-torso {name!r} is not a registered scan torso")
        B, I, H = sizes[0]
        print(f"\nscan vs step loop: {name} fwd+bwd at (B, I, H) = ({B}, {I}, {H}), ms "
              f"(chunked scan of {scan_module.__name__} vs linear_scan_sequential)")
        header = f"{'T':>5} | {'scan':>8} | {'loop':>8} | {'loop/scan':>9}"
        print(header + "\n" + "-" * len(header))
        rows = []
        for steps in SCAN_LENGTHS:
            contenders = {"scan": torso_train(name, B, I, H, steps)}
            contenders["loop"] = with_sequential_scan(name, torso_train(name, B, I, H, steps))
            t = {k: 1e3 * v for k, v in interleaved(contenders, rounds).items()}
            print(f"{steps:>5} | {t['scan']:8.3f} | {t['loop']:8.3f} | {t['loop'] / t['scan']:8.2f}x", flush=True)
            rows.append({"T": steps, **t})
        results["scan"] = {"torso": name, "B": B, "I": I, "H": H, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
