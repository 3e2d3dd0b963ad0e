"""The resettable prefix scan shared by the linear-recurrence torsos."""

import pytest
import torch

from dream_rl.torsos.scan import linear_scan, linear_scan_sequential


@pytest.mark.parametrize("steps", [1, 2, 3, 8, 13, 64])
@pytest.mark.parametrize("complex_valued", [False, True])
def test_scan_equals_the_sequential_recurrence_with_resets(steps, complex_valued):
    generator = torch.Generator().manual_seed(steps)
    dtype = torch.complex128 if complex_valued else torch.float64
    a = torch.rand(steps, 3, 4, 1, generator=generator, dtype=torch.float64).to(dtype)  # broadcast over the last dim
    b = torch.randn(steps, 3, 4, 5, generator=generator, dtype=torch.float64).to(dtype)
    h0 = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64).to(dtype)
    starts = torch.rand(steps, 3, generator=generator) < 0.2
    expected = linear_scan_sequential(a, b, h0, starts)
    torch.testing.assert_close(linear_scan(a, b, h0, starts), expected, rtol=1e-12, atol=1e-12)
    # by hand: h_t = a_t h_{t-1} + b_t, zero before a reset
    h = h0
    for t in range(steps):
        h = torch.where(starts[t].reshape(3, 1, 1), torch.zeros_like(h), h)
        h = a[t] * h + b[t]
        torch.testing.assert_close(expected[t], h, rtol=1e-12, atol=1e-12)


def test_reset_discards_non_finite_initial_state_and_gradients_flow():
    a = torch.full((5, 2, 3), 0.5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.tensor([[float("nan")] * 3, [1.0] * 3], dtype=torch.float64)
    starts = torch.zeros(5, 2, dtype=torch.bool)
    starts[0, 0] = True
    h = linear_scan(a, b, h0, starts)
    assert torch.isfinite(h).all()
    h.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("steps", [5, 9, 31, 128, 200])
@pytest.mark.parametrize("complex_valued", [False, True])
def test_gradients_equal_those_of_the_sequential_recurrence(steps, complex_valued):
    """The hand-written backward (the reversed recurrence) against autograd through the step loop,
    with a decay broadcast over the last dimension and resets inside the sequence."""
    generator = torch.Generator().manual_seed(100 + steps)
    dtype = torch.complex128 if complex_valued else torch.float64

    def leaf(*shape):
        values = torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
        return values.requires_grad_()

    a = (0.95 * torch.rand(steps, 3, 4, 1, generator=generator, dtype=torch.float64)).to(dtype).requires_grad_()
    b, h0 = leaf(steps, 3, 4, 5), leaf(3, 4, 5)
    weights = torch.randn(steps, 3, 4, 5, generator=generator, dtype=torch.float64).to(dtype)
    starts = torch.rand(steps, 3, generator=generator) < 0.1
    grads = []
    for scan in (linear_scan, linear_scan_sequential):
        h = scan(a, b, h0, starts)
        loss = (h * weights).real.sum() + h.abs().square().sum()
        grads.append(torch.autograd.grad(loss, (a, b, h0)))
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_gradcheck_and_time_invariant_decay():
    a = torch.rand(1, 2, 3, dtype=torch.float64, requires_grad=True)  # one decay for every step
    b = torch.randn(12, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0), (a, b, h0))
    torch.testing.assert_close(linear_scan(a, b, h0), linear_scan_sequential(a, b, h0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [3, 9, 31, 128])
@pytest.mark.parametrize("complex_valued", [False, True])
def test_one_decay_for_every_step(steps, complex_valued):
    """a of leading size 1 (a time-invariant model without resets) takes its own, shorter path."""
    generator = torch.Generator().manual_seed(200 + steps)
    dtype = torch.complex128 if complex_valued else torch.float64
    a = (0.9 * torch.rand(1, 1, 4, 1, generator=generator, dtype=torch.float64)).to(dtype).requires_grad_()
    b = torch.randn(steps, 3, 4, 5, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
    h0 = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
    weights = torch.randn(steps, 3, 4, 5, generator=generator, dtype=torch.float64).to(dtype)
    results = []
    for scan in (linear_scan, linear_scan_sequential):
        h = scan(a, b, h0)
        loss = (h * weights).real.sum()
        results.append((h, *torch.autograd.grad(loss, (a, b, h0))))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_scan_torsos_take_dropout_between_layers_like_nn_lstm():
    from dream_rl import TORSOS, TorsoError

    torch.manual_seed(0)
    torso = TORSOS["lru"](3, 6, 2, dropout=0.5).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    state = torso.initial_state(2, dtype=torch.float64)
    torso.eval()
    first, _ = torso(x, state)
    torch.testing.assert_close(torso(x, state)[0], first)  # no dropout in eval mode
    torso.train()
    assert not torch.equal(torso(x, state)[0], first)
    one_layer = TORSOS["lru"](3, 6, 1, dropout=0.5).double().train()  # nothing between layers to drop
    torch.testing.assert_close(one_layer(x, state[:, : one_layer.state_size])[0],
                               one_layer(x, state[:, : one_layer.state_size])[0])
    with pytest.raises(TorsoError, match="dropout must be in"):
        TORSOS["mingru"](3, 6, 2, dropout=1.5)
