"""The dnc torso against the differentiable neural computer of Graves et al. 2016 (Methods section):
content addressing, usage and allocation, the temporal links, and the whole step written out head by
head. The shared contract is in tests/torsos/test_contract.py."""

import pytest
import torch
from torch.nn import functional as F

from dream_rl import TORSOS
from dream_rl.errors import TorsoError
from dream_rl.torsos.dnc import EPS, allocation_weights, content_weights, updated_links, updated_usage

T, B, F_IN, H = 7, 3, 5, 8
SMALL = dict(num_words=5, word_size=3, read_heads=2, controller_size=6)


def cosine(key: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
    return (key * word).sum(-1) / (torch.sqrt((key * key).sum(-1) + EPS) * torch.sqrt((word * word).sum(-1) + EPS))


def paper_allocation(usage: torch.Tensor) -> torch.Tensor:
    """a[φ_j] = (1 − u[φ_j]) Π_{i<j} u[φ_i], one sample at a time; φ sorts by usage, equal usages (to 1e-12,
    rounding noise) by index."""
    out = torch.zeros_like(usage)
    for b in range(usage.shape[0]):
        order = sorted(range(usage.shape[1]), key=lambda i: (round(usage[b, i].item(), 12), i))
        running = torch.ones((), dtype=usage.dtype)
        for slot in order:
            out[b, slot] = (1 - usage[b, slot]) * running
            running = running * usage[b, slot]
    return out


def paper_step(layer, x_t, state):
    """One DNC step from the paper's equations, head by head and slot by slot where it is clearer."""
    n, w, r, c = layer.num_words, layer.word_size, layer.read_heads, layer.controller_size
    h, cell, memory, usage, links, precedence, read_w, write_w, reads = state.split(layer.sizes, dim=1)
    batch = x_t.shape[0]
    memory, links, read_w = memory.reshape(batch, n, w), links.reshape(batch, n, n), read_w.reshape(batch, r, n)
    controller = torch.nn.LSTMCell(x_t.shape[1] + r * w, c).double()
    with torch.no_grad():  # the layer's weights as nn.LSTMCell's: input [x, reads], hidden h
        controller.weight_ih.copy_(torch.cat([layer.controller_x.weight, layer.controller_rh.weight[:, : r * w]], 1))
        controller.weight_hh.copy_(layer.controller_rh.weight[:, r * w :])
        controller.bias_ih.copy_(layer.controller_x.bias)
        controller.bias_hh.zero_()
    h, cell = controller(torch.cat([x_t, reads], dim=1), (h, cell))
    xi = dict(zip(layer.interface_names, layer.interface(h).split(layer.interface_sizes, dim=1)))
    read_keys, read_strengths = xi["read_keys"].reshape(batch, r, w), 1 + F.softplus(xi["read_strengths"])
    write_key, write_strength = xi["write_key"], 1 + F.softplus(xi["write_strength"])
    erase, write_vector, free = torch.sigmoid(xi["erase"]), xi["write_vector"], torch.sigmoid(xi["free_gates"])
    g_a, g_w = torch.sigmoid(xi["allocation_gate"]), torch.sigmoid(xi["write_gate"])
    modes = torch.softmax(xi["read_modes"].reshape(batch, r, 3), -1)
    psi = torch.ones(batch, n, dtype=x_t.dtype)
    for i in range(r):
        psi = psi * (1 - free[:, i : i + 1] * read_w[:, i])
    usage = (usage + write_w - usage * write_w) * psi
    lookup = torch.softmax(write_strength * cosine(write_key.unsqueeze(1), memory), dim=-1)
    write_w = g_w * (g_a * paper_allocation(usage) + (1 - g_a) * lookup)
    memory = memory * (1 - write_w.unsqueeze(2) * erase.unsqueeze(1)) + write_w.unsqueeze(2) * write_vector.unsqueeze(1)
    new_links = torch.zeros_like(links)
    for i in range(n):
        for j in range(n):
            if i != j:
                keep = 1 - write_w[:, i] - write_w[:, j]
                new_links[:, i, j] = keep * links[:, i, j] + write_w[:, i] * precedence[:, j]
    links = new_links
    precedence = (1 - write_w.sum(1, keepdim=True)) * precedence + write_w
    new_read_w = []
    for i in range(r):
        content = torch.softmax(read_strengths[:, i : i + 1] * cosine(read_keys[:, i].unsqueeze(1), memory), dim=-1)
        forward = (links @ read_w[:, i].unsqueeze(-1)).squeeze(-1)  # L w
        backward = (links.transpose(1, 2) @ read_w[:, i].unsqueeze(-1)).squeeze(-1)  # Lᵀ w
        new_read_w.append(modes[:, i, 0:1] * backward + modes[:, i, 1:2] * content + modes[:, i, 2:3] * forward)
    read_w = torch.stack(new_read_w, dim=1)
    reads = torch.cat([(read_w[:, i].unsqueeze(1) @ memory).squeeze(1) for i in range(r)], dim=1)
    y = layer.output(torch.cat([h, reads], dim=1))
    flat = [h, cell, memory.reshape(batch, -1), usage, links.reshape(batch, -1), precedence, read_w.reshape(batch, -1),
            write_w, reads]  # fmt: skip
    return y, torch.cat(flat, dim=1)


def test_dnc_is_the_papers_model_step_by_step():
    torch.manual_seed(0)
    torso = TORSOS["dnc"](F_IN, H, 2, **SMALL).double()
    x = torch.randn(T, B, F_IN, dtype=torch.float64)
    starts = torch.zeros(T, B, dtype=torch.bool)
    starts[0, 1] = starts[3, 0] = starts[5, 2] = True
    with torch.no_grad():
        _, state = torso(torch.randn(6, B, F_IN, dtype=torch.float64), torso.initial_state(B, dtype=torch.float64))
        out, final = torso(x, state, starts)
        states = list(state.split(torso.layer_sizes, dim=1))
        outs = []
        for t in range(T):
            inp = x[t]
            for index, layer in enumerate(torso.layers):
                fresh = torch.where(starts[t].reshape(-1, 1), torch.zeros_like(states[index]), states[index])
                inp, states[index] = paper_step(layer, inp, fresh)
            outs.append(inp)
    torch.testing.assert_close(out, torch.stack(outs), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, torch.cat(states, dim=1), rtol=1e-10, atol=1e-12)


def test_content_addressing_at_the_empty_memory_is_uniform_with_finite_gradients():
    memory = torch.zeros(2, 4, 3, dtype=torch.float64, requires_grad=True)
    keys = torch.zeros(2, 1, 3, dtype=torch.float64, requires_grad=True)
    strengths = torch.full((2, 1), 5.0, dtype=torch.float64, requires_grad=True)
    weights = content_weights(memory, keys, strengths)
    torch.testing.assert_close(weights, torch.full_like(weights, 0.25))
    (weights * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    for tensor in (memory, keys, strengths):
        assert torch.isfinite(tensor.grad).all()
    # and the whole torso from its initial state: finite outputs and gradients
    torch.manual_seed(0)
    torso = TORSOS["dnc"](F_IN, H).double()
    x = torch.randn(3, B, F_IN, dtype=torch.float64, requires_grad=True)
    state = torso.initial_state(B, dtype=torch.float64).requires_grad_()
    out, final = torso(x, state)
    (out.sum() + final.sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(state.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in torso.parameters())


def test_content_addressing_picks_the_most_similar_word():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]], dtype=torch.float64)
    key = torch.tensor([[[0.0, 0.5]]], dtype=torch.float64)
    weights = content_weights(memory, key, torch.tensor([[50.0]], dtype=torch.float64))
    assert weights.argmax().item() == 1 and weights[0, 0, 1] > 0.99  # cosine, not dot product: scale does not matter
    expected = torch.softmax(50.0 * cosine(torch.tensor([0.0, 0.5]).double(), memory[0]), dim=-1)
    torch.testing.assert_close(weights[0, 0], expected)


def test_allocation_is_the_papers_free_list():
    usage = torch.tensor([[0.5, 0.2, 0.9, 0.4], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.3, 1.0]], dtype=torch.float64)
    allocation = allocation_weights(usage)
    # least used first: slot 1 gets 0.8, slot 3 0.6·0.2, slot 0 0.5·0.2·0.4, slot 2 0.1·0.2·0.4·0.5
    torch.testing.assert_close(allocation[0], torch.tensor([0.04, 0.8, 0.004, 0.12], dtype=torch.float64))
    torch.testing.assert_close(allocation[1], torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))  # empty: slot 0
    full = torch.tensor([0.0, 0.0, 0.7, 0.0], dtype=torch.float64)  # full slots get nothing
    torch.testing.assert_close(allocation[2], full)
    torch.testing.assert_close(allocation, paper_allocation(usage))


def test_allocation_breaks_ties_by_index_not_by_rounding_noise():
    noise = 1e-15  # rounding-sized differences between slots used equally
    usage = torch.tensor([[0.3 + noise, 0.3, 0.3 - noise, 0.9], [0.3 - noise, 0.3, 0.3 + noise, 0.9]], dtype=torch.float64)
    allocation = allocation_weights(usage)
    assert allocation.argmax(dim=1).tolist() == [0, 0]
    torch.testing.assert_close(allocation[0], allocation[1])


def test_a_sample_gets_the_same_state_in_any_batch():
    """Rounding differs between batch sizes; the slots a sample allocates must not (see allocation_weights)."""
    torch.manual_seed(0)
    torso = TORSOS["dnc"](F_IN, H).double()
    x = torch.randn(12, 5, F_IN, dtype=torch.float64)
    with torch.no_grad():
        _, alone = torso(x[:, 2:3], torso.initial_state(1, dtype=torch.float64))
        _, batched = torso(x, torso.initial_state(5, dtype=torch.float64))
    torch.testing.assert_close(batched[2:3], alone, rtol=1e-9, atol=1e-10)


def test_usage_grows_with_writes_and_falls_with_freed_reads():
    usage = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    write = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    reads = torch.tensor([[[0.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]], dtype=torch.float64).transpose(0, 1)  # (1, R=2, N)
    torch.testing.assert_close(updated_usage(usage, write, reads, torch.zeros(1, 2, dtype=torch.float64)),
                               torch.tensor([[1.0, 0.75, 1.0]], dtype=torch.float64))  # fmt: skip
    # both heads read slot 2 and free it at 0.5 each: retention (1 - 0.5)(1 - 0.5)
    torch.testing.assert_close(updated_usage(usage, write, reads, torch.full((1, 2), 0.5, dtype=torch.float64)),
                               torch.tensor([[1.0, 0.75, 0.25]], dtype=torch.float64))  # fmt: skip


def test_links_record_the_order_of_writes_and_reads_follow_them():
    n = 4
    links, precedence = torch.zeros(1, n, n, dtype=torch.float64), torch.zeros(1, n, dtype=torch.float64)
    for slot in (2, 0, 3):  # hard writes, in this order
        links, precedence = updated_links(links, precedence, F.one_hot(torch.tensor([slot]), n).double())
    expected = torch.zeros(n, n, dtype=torch.float64)
    expected[0, 2] = expected[3, 0] = 1.0  # 0 written after 2, 3 after 0
    torch.testing.assert_close(links[0], expected)
    torch.testing.assert_close(precedence[0], F.one_hot(torch.tensor(3), n).double())
    at_slot_0 = F.one_hot(torch.tensor([0]), n).double()
    assert (links[0] @ at_slot_0[0]).argmax().item() == 3  # forward: what was written next
    assert (links[0].T @ at_slot_0[0]).argmax().item() == 2  # backward: what was written before


def test_state_size_and_defaults():
    torso = TORSOS["dnc"](8, 64)
    layer = torso.layers[0]
    assert (layer.num_words, layer.word_size, layer.read_heads, layer.controller_size) == (16, 16, 4, 64)
    assert torso.state_size == 2 * 64 + 16 * 16 + 16 + 16 * 16 + 16 + 4 * 16 + 16 + 4 * 16 == 816


@pytest.mark.parametrize("name", ["num_words", "word_size", "read_heads", "controller_size"])
def test_bad_sizes_are_one_line_torso_errors(name):
    with pytest.raises(TorsoError, match=f"dnc: {name} must be >= 1"):
        TORSOS["dnc"](F_IN, H, **{name: 0})
