"""Every registered torso stays finite over long sequences at its default initialisation, and SHM's
memory no longer grows exponentially (issue 21, BUG 4).

The sweep iterates ``TORSOS``, so a torso registered later is covered without editing this file. Each
run feeds three sequences side by side in one batch (samples never interact): random, constant and
zero input, in calls of ``CALL`` steps that carry the state, as a rollout or a long evaluation would.
"""

from __future__ import annotations

import pytest
import torch

from dream_rl import TORSOS, TorsoError
from dream_rl.torsos.shm import PERIOD_BITS, draw, period_bits

F_IN, WIDTH, CALL = 3, 32, 250
KINDS = ("random", "constant", "zero")


def run_long(name: str, steps: int, seed: int = 0) -> tuple[list[float], bool]:
    """The largest |output| of each kind of input over ``steps`` steps, and whether every output and
    state stayed finite."""
    torch.manual_seed(seed)
    torso = TORSOS[name](F_IN, WIDTH)
    generator = torch.Generator().manual_seed(seed + 1)
    constant = torch.randn(F_IN, generator=generator)
    state = torso.initial_state(len(KINDS))
    worst = torch.zeros(len(KINDS))
    finite = True
    with torch.no_grad():
        for begin in range(0, steps, CALL):
            n = min(CALL, steps - begin)
            x = torch.stack(
                [torch.randn(n, F_IN, generator=generator), constant.expand(n, F_IN), torch.zeros(n, F_IN)], dim=1
            )  # (n, 3, F): one kind per batch entry
            out, state = torso(x, state)
            finite = finite and bool(torch.isfinite(out).all()) and bool(torch.isfinite(state).all())
            worst = torch.maximum(worst, out.abs().amax(dim=(0, 2)))
    return worst.tolist(), finite


@pytest.mark.parametrize("name", sorted(TORSOS))
def test_every_torso_stays_finite_over_5000_steps_of_random_constant_and_zero_input(name):
    worst, finite = run_long(name, 5000)
    assert finite, f"{name}: non-finite output or state within 5000 steps (largest |output| {worst})"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORSOS))
def test_every_torso_stays_finite_over_100000_steps_of_random_constant_and_zero_input(name):
    worst, finite = run_long(name, 100_000)
    assert finite, f"{name}: non-finite output or state within 10^5 steps (largest |output| {worst})"


# ---------------------------------------------------------------- SHM


def shm_outputs(x: torch.Tensor, seed: int, width: int = 64) -> torch.Tensor:
    """Outputs of a default SHM torso of ``width`` over ``x`` (T, B, F), in calls of ``CALL`` steps."""
    torch.manual_seed(seed)
    torso = TORSOS["shm"](x.shape[2], width)
    state = torso.initial_state(x.shape[1])
    outs = []
    with torch.no_grad():
        for begin in range(0, x.shape[0], CALL):
            out, state = torso(x[begin : begin + CALL], state)
            outs.append(out)
    return torch.cat(outs)


@pytest.mark.parametrize("seed", range(4))
def test_shm_output_at_step_1000_stays_small_where_it_reached_1e5(seed):
    """The issue's setting: width 64, default initialisation, 4 seeds. With the fixed 1024-step table of
    unsigned draws the output was 2.4 at step 100, 9.4e4 at step 1000 and inf by step 6,500."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3000, 2, 8, generator=generator)
    magnitude = shm_outputs(x, seed).abs().amax(dim=(1, 2))  # (T,)
    assert torch.isfinite(magnitude).all()
    assert magnitude[:1000].max() < 200, magnitude[:1000].max()
    # no exponential drift: the last thousand steps are not orders of magnitude above the second
    assert magnitude[2000:].max() < 50 * magnitude[1000:2000].max() + 200


def test_shm_input_alternating_every_step_does_not_grow_the_memory_exponentially():
    """A short fixed table of draws, even signed, meets an input that repeats with it (here one that
    alternates every step) with the same draws again and again; the hashed draws do not repeat."""
    generator = torch.Generator().manual_seed(0)
    constant = torch.randn(1, 2, 8, generator=generator)
    signs = 1.0 - 2.0 * (torch.arange(20_000) % 2).float()
    out = shm_outputs(constant * signs.reshape(-1, 1, 1), seed=0)
    assert torch.isfinite(out).all()
    assert out.abs().max() < 1e6


def test_shm_long_sequence_call_equals_its_steps():
    """Exact across the sequence call and the step loop over 1500 steps (the draw is a function of
    the step counter in the state)."""
    torch.manual_seed(0)
    torso = TORSOS["shm"](F_IN, 8, memory_size=4).double()
    x = torch.randn(1500, 2, F_IN, dtype=torch.float64)
    starts = torch.zeros(1500, 2, dtype=torch.bool)
    starts[700, 1] = True  # one episode starts inside the sequence
    state = torso.initial_state(2, dtype=torch.float64)
    with torch.no_grad():
        out, last = torso(x, state, starts)
        steps = []
        for t in range(x.shape[0]):
            step_out, state = torso(x[t : t + 1], state, starts[t : t + 1])
            steps.append(step_out)
    torch.testing.assert_close(torch.cat(steps), out, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(state, last, rtol=1e-9, atol=1e-9)
    assert last[:, -1].tolist() == [1500.0, 1500.0 - 700.0]  # the episode step, exactly


@pytest.mark.parametrize("bits, num_thetas", [(8, 128), (11, 5), (PERIOD_BITS, 128)])
def test_shm_draws_are_exactly_symmetric_over_the_period(bits, num_thetas):
    """Over one period every index of Θ is drawn as often with the sign + as with -, for any key: the
    expected calibration is 1 whatever Θ learns (the paper's stability condition)."""
    key = torch.tensor(12345 % (1 << bits))
    plus = torch.zeros(num_thetas, dtype=torch.long)
    minus = torch.zeros(num_thetas, dtype=torch.long)
    hashes = torch.zeros(0, dtype=torch.long)
    block = 1 << 20
    for begin in range(0, 1 << bits, block):
        tau = torch.arange(begin, min(begin + block, 1 << bits))
        index, sign = draw(tau, key, num_thetas, bits)
        assert ((index >= 0) & (index < num_thetas)).all()
        plus += torch.bincount(index[sign > 0], minlength=num_thetas)
        minus += torch.bincount(index[sign < 0], minlength=num_thetas)
        if bits <= 11:
            hashes = torch.cat([hashes, index * 2 + (sign < 0).long()])
    assert torch.equal(plus, minus)
    assert int(plus.sum() + minus.sum()) == 1 << bits
    # consecutive steps are not paired: the signs of steps 2m and 2m+1 agree about half the time
    _, sign = draw(torch.arange(10_000) % (1 << bits), key, num_thetas, bits)
    agree = (sign[0::2] == sign[1::2]).float().mean()
    assert 0.4 < agree < 0.6


def test_shm_period_follows_the_state_dtype():
    assert period_bits(torch.float32) == 24 and period_bits(torch.float64) == 24
    assert period_bits(torch.float16) == 11 and period_bits(torch.bfloat16) == 8


def test_shm_checkpoint_of_the_old_fixed_schedule_is_refused_in_one_line():
    torso = TORSOS["shm"](F_IN, 8)
    old = dict(torso.state_dict())
    del old["layers.0.draw_key"]
    old["layers.0.schedule"] = torch.zeros(1024, dtype=torch.long)
    with pytest.raises(TorsoError, match="fixed 1024-step schedule of earlier versions.*retrain"):
        torso.load_state_dict(old)
