"""DREAM (sequence model, forward_with_mask) and DREAMStack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dream_rl import DREAM, DREAMCell, DREAMConfig, DREAMError, DREAMStack, DREAMState

FIELDS = ["h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise"]
TOL = dict(rtol=1e-10, atol=1e-12)  # float64 comparisons between code paths


def dream(dtype=torch.float64, seed=0, **kwargs) -> DREAM:
    torch.manual_seed(seed)
    return DREAM(**{**dict(input_dim=3, hidden_dim=6, rank=2), **kwargs}).to(dtype)


def stack(dtype=torch.float64, seed=0, **kwargs) -> DREAMStack:
    torch.manual_seed(seed)
    return DREAMStack(**{**dict(input_dim=3, hidden_dims=[6, 5, 4], rank=2), **kwargs}).to(dtype)


def assert_states_close(a: DREAMState, b: DREAMState, **tol) -> None:
    for name in FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), **(tol or TOL), msg=lambda m, n=name: f"{n}: {m}")


def state_slice(state: DREAMState, i: int) -> DREAMState:
    return DREAMState(*(getattr(state, n)[i:i + 1] for n in FIELDS))


# ---------------------------------------------------------------------------- DREAM
def test_dream_builds_its_config_from_arguments():
    model = DREAM(input_dim=5, hidden_dim=9, rank=3, ltc_enabled=False, kappa=1.0)
    config = model.get_config()
    assert isinstance(config, DREAMConfig) and isinstance(model.cell, DREAMCell)
    assert (config.input_dim, config.hidden_dim, config.rank, config.ltc_enabled, config.kappa) == (5, 9, 3, False, 1.0)
    defaults = DREAM()
    assert defaults.get_config() == DREAMConfig()  # seed defaults: 39 -> 256, rank 16


def test_dream_forward_shapes_and_return_sequences():
    model = dream(torch.float32)
    x = torch.randn(4, 7, 3)
    out, state = model(x)
    assert out.shape == (4, 7, 6) and isinstance(state, DREAMState)
    assert state.shape() == model.init_state(4).shape()
    last, state_last = model(x, return_sequences=False)
    assert last.shape == (4, 6)
    assert torch.equal(last, out[:, -1])
    for name in FIELDS:
        assert torch.equal(getattr(state, name), getattr(state_last, name))


def test_dream_default_state_is_the_initial_state_and_matches_the_cell():
    model = dream()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    out, state = model(x)
    out_explicit, state_explicit = model(x, model.init_state(3))
    out_cell, state_cell = model.cell.forward_sequence(x, model.cell.init_state(3))
    assert torch.equal(out, out_explicit)
    torch.testing.assert_close(out, out_cell, **TOL)
    assert_states_close(state, state_explicit)
    assert_states_close(state, state_cell)
    assert state.h.dtype == torch.float64  # the default state follows the input's dtype


def test_dream_state_carries_across_calls():
    model = dream()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    full, final = model(x)
    first, mid = model(x[:, :4])
    second, end = model(x[:, 4:], mid.detach())
    torch.testing.assert_close(torch.cat([first, second], 1), full, **TOL)
    assert_states_close(end, final)


def test_dream_train_and_eval_identical():
    model = dream(torch.float32)
    x = torch.randn(2, 6, 3)
    model.train()
    a, sa = model(x)
    model.eval()
    b, sb = model(x)
    assert torch.equal(a, b)
    for name in FIELDS:
        assert torch.equal(getattr(sa, name), getattr(sb, name))


def test_dream_gradients_reach_every_parameter():
    model = dream(torch.float32)
    out, state = model(torch.randn(3, 5, 3))
    (out.square().sum() + state.U.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_dream_reset_parameters_and_seed_idiom():
    model = dream(torch.float32)
    before = model.cell.weight_in.detach().clone()
    model.reset_parameters()
    after = model.cell.weight_in.detach().clone()
    assert not torch.equal(before, after)
    model.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    assert not torch.equal(after, model.cell.weight_in)
    assert torch.equal(model.cell.plasticity, torch.full((6,), model.get_config().base_plasticity))


@pytest.mark.parametrize(
    "x", [torch.randn(4, 3), torch.randn(4, 5, 2), torch.randn(2, 4, 5, 3), np.zeros((2, 5, 3))],
    ids=["2d", "wrong_input_dim", "4d", "numpy"],
)
def test_dream_rejects_bad_inputs(x):
    model = dream(torch.float32)
    with pytest.raises(DREAMError, match="input_dim"):
        model(x)
    with pytest.raises(DREAMError, match="input_dim"):
        model.forward_with_mask(x, torch.tensor([1, 1]))


def test_dream_rejects_a_state_of_the_wrong_batch():
    model = dream(torch.float32)
    with pytest.raises(DREAMError, match="batch"):
        model(torch.randn(3, 5, 3), model.init_state(2))
    with pytest.raises(DREAMError, match="batch"):
        model(torch.randn(3, 5, 3), model.init_state(1))


def test_dream_invalid_config_raises():
    with pytest.raises(DREAMError, match="input_dim"):
        DREAM(input_dim=-1)
    with pytest.raises(DREAMError, match="rank"):
        DREAM(input_dim=3, hidden_dim=4, rank=8)
    with pytest.raises(DREAMError, match="kappa"):
        DREAM(input_dim=3, hidden_dim=4, rank=2, kappa=-1.0)


# ---------------------------------------------------------------------------- forward_with_mask
def _per_length_check(model: DREAM, x: torch.Tensor, lengths: list[int], state: DREAMState | None) -> None:
    out, final = model.forward_with_mask(x, torch.tensor(lengths), state)
    B, T, H = x.shape[0], x.shape[1], model.get_config().hidden_dim
    assert out.shape == (B, T, H)
    for i, length in enumerate(lengths):
        own_state = None if state is None else state_slice(state, i)
        out_i, final_i = model(x[i:i + 1, :length], own_state)  # the sequence run on its own
        torch.testing.assert_close(out[i, :length], out_i[0], **TOL)
        assert torch.equal(out[i, length:], torch.zeros(T - length, H, dtype=x.dtype))  # padding: zeros
        assert_states_close(state_slice(final, i), final_i)


def test_forward_with_mask_equals_per_length_runs():
    model = dream()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    _per_length_check(model, x, [7, 3, 1, 5], None)


def test_forward_with_mask_from_a_given_state():
    model = dream(base_plasticity=1.0)
    _, state = model(torch.randn(4, 5, 3, dtype=torch.float64))
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    _per_length_check(model, x, [2, 6, 4, 1], state)


def test_forward_with_mask_padding_values_are_ignored():
    model = dream()
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, final = model.forward_with_mask(x, lengths)
    garbage = x.clone()
    garbage[1, 2:] = 1e6
    garbage[2, 4:] = float("nan")
    out_g, final_g = model.forward_with_mask(garbage, lengths)
    assert torch.equal(out, out_g)
    for name in FIELDS:
        assert torch.equal(getattr(final, name), getattr(final_g, name)), name


def test_forward_with_mask_full_lengths_equals_forward():
    model = dream()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    out, final = model.forward_with_mask(x, torch.full((3,), 5))
    ref, ref_final = model(x)
    torch.testing.assert_close(out, ref, **TOL)
    assert_states_close(final, ref_final)


@pytest.mark.parametrize("lengths", [[4, 2], np.array([4, 2]), torch.tensor([[4], [2]]), torch.tensor([4, 2], dtype=torch.int32)],
                         ids=["list", "numpy", "column", "int32"])
def test_forward_with_mask_accepts_integer_length_containers(lengths):
    model = dream()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    out, _ = model.forward_with_mask(x, lengths)
    reference, _ = model.forward_with_mask(x, torch.tensor([4, 2]))
    assert torch.equal(out, reference)


def test_forward_with_mask_gradients_ignore_padding():
    model = dream()
    x = torch.randn(3, 6, 3, dtype=torch.float64, requires_grad=True)
    lengths = [6, 2, 4]
    out, final = model.forward_with_mask(x, torch.tensor(lengths))
    (out.sum() + final.h.sum() + final.U.sum()).backward()
    for i, length in enumerate(lengths):
        assert torch.equal(x.grad[i, length:], torch.zeros_like(x.grad[i, length:]))
        assert (x.grad[i, :length].abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize(
    "lengths",
    [[0, 3], [3, 6], [-1, 2], [3], [3, 3, 3], torch.tensor([2.0, 3.0])],
    ids=["zero", "too_long", "negative", "too_few", "too_many", "float"],
)
def test_forward_with_mask_rejects_bad_lengths(lengths):
    model = dream(torch.float32)
    with pytest.raises(DREAMError, match="lengths"):
        model.forward_with_mask(torch.randn(2, 5, 3), torch.as_tensor(lengths))


def test_forward_with_mask_rejects_a_state_of_the_wrong_batch():
    model = dream(torch.float32)
    x = torch.randn(3, 5, 3)
    with pytest.raises(DREAMError, match="batch"):
        model.forward_with_mask(x, torch.tensor([5, 3, 2]), model.init_state(1))  # no silent broadcasting
    with pytest.raises(DREAMError, match="batch"):
        model.forward_with_mask(x, torch.tensor([5, 3, 2]), model.init_state(4))


# ---------------------------------------------------------------------------- DREAMStack
def test_stack_shapes_and_state_list():
    model = stack(torch.float32)
    x = torch.randn(4, 7, 3)
    out, states = model(x)
    assert out.shape == (4, 7, 4)
    assert isinstance(states, list) and len(states) == 3
    in_dims, hidden = [3, 6, 5], [6, 5, 4]
    for state, i_dim, h_dim in zip(states, in_dims, hidden):
        assert isinstance(state, DREAMState)
        assert state.shape() == {"h": (4, h_dim), "U": (4, h_dim, 2), "U_target": (4, h_dim, 2), "adaptive_tau": (4,),
                                 "error_mean": (4, i_dim), "error_var": (4, i_dim), "avg_surprise": (4,)}
    assert model.hidden_dims == hidden
    configs = model.get_config()
    assert [c.input_dim for c in configs] == in_dims and [c.hidden_dim for c in configs] == hidden
    assert [s.shape() for s in model.init_state(4)] == [s.shape() for s in states]


def test_stack_shares_config_kwargs_across_layers():
    model = DREAMStack(input_dim=3, hidden_dims=(8, 6), rank=3, ltc_enabled=False, target_norm=1.5)
    assert all(not c.ltc_enabled and c.target_norm == 1.5 and c.rank == 3 for c in model.get_config())


def test_stack_is_the_composition_of_its_layers_in_eval_mode():
    model = stack(dropout=0.5).eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out, states = model(x)
    h, manual_states = x, []
    for layer in model.layers:
        h, s = layer(h)
        manual_states.append(s)
    torch.testing.assert_close(out, h, **TOL)
    for a, b in zip(states, manual_states):
        assert_states_close(a, b)


def test_stack_eval_mode_is_deterministic_and_train_mode_drops_between_layers():
    model = stack(torch.float32, dropout=0.5)
    x = torch.randn(2, 5, 3)
    model.eval()
    a, sa = model(x)
    b, _ = model(x)
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(1)
    c, sc = model(x)
    torch.manual_seed(2)
    d, sd = model(x)
    assert not torch.equal(c, d)  # dropout between layers is active in training
    for name in FIELDS:  # ... but never on the stack's input: the first layer is untouched
        assert torch.equal(getattr(sc[0], name), getattr(sa[0], name)), name
        assert torch.equal(getattr(sd[0], name), getattr(sa[0], name)), name
    assert not torch.equal(sc[1].h, sd[1].h)


def test_stack_has_no_dropout_after_the_last_layer():
    model = stack(torch.float32, hidden_dims=[6], dropout=0.9)  # one layer: no "between"
    x = torch.randn(2, 5, 3)
    model.train()
    a, _ = model(x)
    model.eval()
    b, _ = model(x)
    assert torch.equal(a, b)
    assert (a != 0).float().mean() > 0.9  # nothing zeroed at the output


def test_stack_without_dropout_is_mode_independent():
    model = stack(torch.float32, dropout=0.0)
    x = torch.randn(2, 5, 3)
    model.train()
    a, _ = model(x)
    model.eval()
    b, _ = model(x)
    assert torch.equal(a, b)


def test_stack_states_continue_the_sequence():
    model = stack(dropout=0.3).eval()
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    full, final = model(x)
    first, mid = model(x[:, :6])
    second, end = model(x[:, 6:], [s.detach() for s in mid])
    torch.testing.assert_close(torch.cat([first, second], 1), full, **TOL)
    for a, b in zip(end, final):
        assert_states_close(a, b)
    second_tuple, _ = model(x[:, 6:], tuple(mid))  # a tuple of states works too
    torch.testing.assert_close(second_tuple, second, **TOL)


def test_stack_gradients_reach_every_layer():
    model = stack(torch.float32, dropout=0.2)
    out, states = model(torch.randn(2, 4, 3))
    (out.square().sum() + sum(s.U.sum() for s in states)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_stack_reset_parameters_and_seed_idiom():
    model = stack(torch.float32)
    before = [layer.cell.weight_in.detach().clone() for layer in model.layers]
    model.reset_parameters()
    assert all(not torch.equal(b, layer.cell.weight_in) for b, layer in zip(before, model.layers))
    mid = [layer.cell.weight_in.detach().clone() for layer in model.layers]
    model.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    assert all(not torch.equal(b, layer.cell.weight_in) for b, layer in zip(mid, model.layers))


@pytest.mark.parametrize("hidden_dims", [[], None, "64", 64], ids=["empty", "none", "str", "int"])
def test_stack_rejects_bad_hidden_dims_container(hidden_dims):
    with pytest.raises(DREAMError, match="hidden_dims"):
        DREAMStack(input_dim=3, hidden_dims=hidden_dims, rank=2)


@pytest.mark.parametrize("hidden_dims, field", [([0], "hidden_dim"), ([8, -1], "hidden_dim"), ([8, 4.0], "hidden_dim"),
                                                ([8, 1], "rank")])
def test_stack_rejects_bad_layer_sizes(hidden_dims, field):
    with pytest.raises(DREAMError, match=field):
        DREAMStack(input_dim=3, hidden_dims=hidden_dims, rank=2)


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan"), "0.1", None, True])
def test_stack_rejects_bad_dropout(dropout):
    with pytest.raises(DREAMError, match="dropout"):
        DREAMStack(input_dim=3, hidden_dims=[4], rank=2, dropout=dropout)


def test_stack_rejects_bad_input_and_config():
    with pytest.raises(DREAMError, match="input_dim"):
        DREAMStack(input_dim=-1, hidden_dims=[4], rank=2)
    model = stack(torch.float32)
    with pytest.raises(DREAMError, match="input_dim"):
        model(torch.randn(2, 5, 4))


def test_stack_rejects_bad_state_lists():
    model = stack(torch.float32)
    x = torch.randn(2, 5, 3)
    states = model.init_state(2)
    with pytest.raises(DREAMError, match="one per layer"):
        model(x, states[:2])
    with pytest.raises(DREAMError, match="one per layer"):
        model(x, states + states[:1])
    with pytest.raises(DREAMError, match="one per layer"):
        model(x, states[0])  # a single DREAMState, not a list
    with pytest.raises(DREAMError, match="batch"):
        model(x, model.init_state(3))  # per-layer states of the wrong batch
    with pytest.raises(DREAMError):
        model(x, list(reversed(states)))  # layer states in the wrong order (dims mismatch)
