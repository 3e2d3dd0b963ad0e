"""Model-specific checks of the zoo II torsos (the shared contract is tests/torsos/test_contract.py):
sLSTM's stabiliser, the attention window's reach, LeWorld's range reads, and the documented state sizes."""

import pytest
import torch
from torch import nn

from dream_rl import TORSOS, TorsoError
from dream_rl.torsos.leworld import _product_key_split, range_read_weights

F_IN = 5


def test_state_sizes_at_width_64_are_the_documented_ones():
    sizes = {name: TORSOS[name](8, 64).state_size for name in ["elman", "slstm", "self_attention", "leworld"]}
    assert sizes == {"elman": 64, "slstm": 256, "self_attention": 16 * 2 * 32 + 1, "leworld": 64 * 16 + 16}


def test_elman_is_nn_rnn():
    torch.manual_seed(0)
    torso = TORSOS["elman"](F_IN, 8, 2).double()
    x = torch.randn(6, 3, F_IN, dtype=torch.float64)
    out, _ = torso(x, torso.initial_state(3, dtype=torch.float64))
    reference, _ = nn.RNN.forward(torso.rnn, x)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)


def unstabilised_slstm(layer, x: torch.Tensor) -> torch.Tensor:
    """The sLSTM equations without the stabiliser (C and N grow as exp of the input gate)."""
    steps, batch = x.shape[:2]
    heads, d = layer.num_heads, layer.head_size
    h = c = n = torch.zeros(batch, heads, d, dtype=x.dtype)
    outs = []
    for t in range(steps):
        gates = layer.input_proj(x[t]).view(batch, heads, 4 * d) + torch.einsum("bhd,hde->bhe", h, layer.recurrent)
        z, i, f, o = gates.view(batch, heads, 4, d).unbind(2)
        c = torch.sigmoid(f) * c + torch.exp(i) * torch.tanh(z)
        n = torch.sigmoid(f) * n + torch.exp(i)
        h = torch.sigmoid(o) * c / n
        outs.append(h.reshape(batch, -1))
    return torch.stack(outs)


def test_slstm_stabiliser_changes_nothing_but_keeps_large_gates_finite():
    torch.manual_seed(0)
    torso = TORSOS["slstm"](F_IN, 8, num_heads=2).double()
    x = torch.randn(12, 3, F_IN, dtype=torch.float64)
    out, _ = torso(x, torso.initial_state(3, dtype=torch.float64))
    torch.testing.assert_close(out, unstabilised_slstm(torso.layers[0], x), rtol=1e-10, atol=1e-12)
    # input gates of e^±2000: the unstabilised form overflows, the stabilised one does not
    torso32 = TORSOS["slstm"](F_IN, 8, num_heads=2)
    big = 1000.0 * torch.randn(20, 3, F_IN)
    out, state = torso32(big, torso32.initial_state(3))
    assert torch.isfinite(out).all() and torch.isfinite(state).all()
    assert not torch.isfinite(unstabilised_slstm(torso32.layers[0], big)).all()


def test_slstm_heads_do_not_see_each_other():
    torch.manual_seed(0)
    torso = TORSOS["slstm"](F_IN, 8, num_heads=2).double()
    x = torch.randn(1, 2, F_IN, dtype=torch.float64)
    state = torso.initial_state(2, dtype=torch.float64)
    state[:, :8] = torch.randn(2, 8, dtype=torch.float64)  # h
    state[:, 16:24] = 1.0  # n: a started state
    changed = state.clone()
    changed[:, 4:8] += 1.0  # h of head 1
    out, _ = torso(x, state)
    changed_out, _ = torso(x, changed)
    torch.testing.assert_close(out[..., :4], changed_out[..., :4], rtol=0, atol=0)
    assert not torch.equal(out[..., 4:], changed_out[..., 4:])


def test_slstm_heads_must_divide_the_width():
    with pytest.raises(TorsoError, match="multiple of num_heads"):
        TORSOS["slstm"](F_IN, 10, num_heads=4)


@pytest.mark.parametrize("single_steps", [False, True])
def test_attention_sees_exactly_the_last_window_steps(single_steps):
    window = 4
    torch.manual_seed(0)
    torso = TORSOS["self_attention"](F_IN, 8, window=window, attention_size=8, num_heads=2).double()
    x = torch.randn(window + 4, 2, F_IN, dtype=torch.float64)
    changed = x.clone()
    changed[1] += 1.0

    def run(inputs):
        state = torso.initial_state(2, dtype=torch.float64)
        if not single_steps:
            return torso(inputs, state)
        outs = []
        for t in range(inputs.shape[0]):
            out, state = torso(inputs[t : t + 1], state)
            outs.append(out)
        return torch.cat(outs), state

    with torch.no_grad():
        (out, state), (changed_out, changed_state) = run(x), run(changed)
    assert not torch.equal(out[1 + window], changed_out[1 + window])  # step 1 is in step 5's window
    torch.testing.assert_close(out[2 + window :], changed_out[2 + window :], rtol=0, atol=0)  # not in step 6's
    torch.testing.assert_close(state, changed_state, rtol=0, atol=0)
    assert state[:, -1].tolist() == [window, window]  # a full window


def test_attention_window_of_a_fresh_run_counts_its_steps():
    torso = TORSOS["self_attention"](F_IN, 8, window=6, attention_size=8, num_heads=2)
    _, state = torso(torch.randn(4, 3, F_IN), torso.initial_state(3))
    assert state[:, -1].tolist() == [4, 4, 4]
    keys = state[:, : 6 * 8].view(3, 6, 8)
    assert not keys[:, :2].any() and keys[:, 2:].abs().sum(-1).gt(0).all()  # empty slots stay zeros


def test_leworld_range_reads_are_the_mean_over_a_wrapping_range():
    torch.manual_seed(0)
    words, max_range = 12, 5
    start = torch.softmax(torch.randn(3, words, dtype=torch.float64), -1)
    length = torch.softmax(torch.randn(3, max_range, dtype=torch.float64), -1)
    expected = torch.zeros(3, words, dtype=torch.float64)
    for a in range(words):
        for span in range(1, max_range + 1):
            for offset in range(span):
                expected[:, (a + offset) % words] += start[:, a] * length[:, span - 1] / span
    weights = range_read_weights(start, length)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, dtype=torch.float64))


def test_leworld_product_keys_cover_the_memory():
    assert _product_key_split(64) == (8, 8)
    assert _product_key_split(128) == (8, 16)
    assert _product_key_split(7) == (1, 7)
    with pytest.raises(TorsoError, match="max_range"):
        TORSOS["leworld"](F_IN, 8, num_words=4, max_range=8)


def test_leworld_memory_carries_information_the_output_does_not_need_each_step():
    """An input seen once changes the memory, and through it outputs many steps later."""
    torch.manual_seed(0)
    torso = TORSOS["leworld"](F_IN, 8, num_words=16, word_size=4, max_range=4, controller_size=8, query_size=4).double()
    x = torch.zeros(10, 2, F_IN, dtype=torch.float64)
    x[0, 1] = 3.0
    out, state = torso(x, torso.initial_state(2, dtype=torch.float64))
    assert not torch.allclose(out[9, 0], out[9, 1])
    memory = state[:, : 16 * 4]
    assert memory.abs().sum() > 0 and not torch.equal(memory[0], memory[1])
