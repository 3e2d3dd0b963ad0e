"""The fwp torso against the delta rule of Schlag, Irie & Schmidhuber 2021; the shared contract is in
tests/torsos/test_contract.py."""

import pytest
import torch
from torch.nn import functional as F

from dream_rl import TORSOS
from dream_rl.errors import TorsoError
from dream_rl.torsos.fwp import EPS, delta_rule_chunked, dpfp

T, B, F_IN, H = 11, 3, 5, 8


def inputs(seed: int = 0, steps: int = T) -> torch.Tensor:
    return torch.randn(steps, B, F_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def some_starts() -> torch.Tensor:
    starts = torch.zeros(T, B, dtype=torch.bool)
    # inside a chunk of 4, at a chunk's first step (4, 8), twice in one chunk, at step 0
    starts[0, 1] = starts[4, 0] = starts[5, 2] = starts[6, 2] = starts[8, 1] = starts[9, 0] = True
    return starts


def paper_feature_map(z: torch.Tensor, kind: str, nu: int) -> torch.Tensor:
    """φ written out index by index: DPFP_ν's feature (j, i) is r_i · r_{(i+j) mod 2d}; then sum normalisation."""
    if kind == "relu":
        phi = F.relu(z)
    else:
        r = torch.cat([F.relu(z), F.relu(-z)], dim=-1)
        width = r.shape[-1]
        phi = torch.stack([r[..., i] * r[..., (i + j) % width] for j in range(1, nu + 1) for i in range(width)], dim=-1)
    return phi / (phi.sum(-1, keepdim=True) + EPS)


def reference(layer, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor, kind: str, nu: int):
    """The delta rule one step and one head at a time:
    W_t = W_{t-1} + β_t (v_t − W_{t-1} φ(k_t)) φ(k_t)ᵀ,  y_t = W_t φ(q_t),  out = y + W_s x."""
    heads, d, width = layer.heads, layer.head_dim, layer.hidden_size
    weights = list(state.reshape(B, heads, d, layer.feature_dim).unbind(1))
    w_q, w_k, w_v, w_beta = layer.proj.weight.split([width, width, width, heads])
    outs = []
    for t in range(x.shape[0]):
        ys = []
        for head in range(heads):
            rows = slice(head * d, (head + 1) * d)
            w = torch.where(starts[t].reshape(B, 1, 1), torch.zeros_like(weights[head]), weights[head])
            q = paper_feature_map(x[t] @ w_q[rows].T, kind, nu)
            k = paper_feature_map(x[t] @ w_k[rows].T, kind, nu)
            v = x[t] @ w_v[rows].T
            beta = torch.sigmoid(x[t] @ w_beta[head])
            retrieved = (w @ k.unsqueeze(-1)).squeeze(-1)
            w = w + beta.reshape(B, 1, 1) * (v - retrieved).unsqueeze(-1) * k.unsqueeze(1)
            weights[head] = w
            ys.append((w @ q.unsqueeze(-1)).squeeze(-1))
        outs.append(torch.cat(ys, dim=-1) + layer.shortcut(x[t]))
    return torch.stack(outs), torch.stack(weights, dim=1).reshape(B, -1)


@pytest.mark.parametrize("kind, nu", [("dpfp", 1), ("dpfp", 2), ("relu", 1)])
def test_chunked_delta_rule_equals_the_step_by_step_rule_with_resets(kind, nu):
    torch.manual_seed(0)
    torso = TORSOS["fwp"](F_IN, H, head_dim=4, feature_map=kind, nu=nu, chunk=4).double()  # 3 chunks, 2 heads
    layer = torso.layers[0]
    x, starts = inputs(), some_starts()
    state = torch.randn(B, torso.state_size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out, final = torso(x, state, starts)
        expected, expected_final = reference(layer, x, state, starts, kind, nu)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, expected_final, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 5, 64])
def test_chunk_size_changes_nothing(chunk):
    torch.manual_seed(0)
    reference_torso = TORSOS["fwp"](F_IN, H, 2, head_dim=4, chunk=4).double()
    torso = TORSOS["fwp"](F_IN, H, 2, head_dim=4, chunk=chunk).double()
    torso.load_state_dict(reference_torso.state_dict())
    x, starts = inputs(), some_starts()
    with torch.no_grad():
        expected, expected_final = reference_torso(x, reference_torso.initial_state(B, dtype=torch.float64), starts)
        out, final = torso(x, torso.initial_state(B, dtype=torch.float64), starts)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, expected_final, rtol=1e-10, atol=1e-12)


def test_dpfp_is_the_papers_feature_map():
    z = torch.randn(4, 6, dtype=torch.float64)
    for nu in (1, 2, 3):
        features = dpfp(z, nu)
        assert features.shape == (4, 2 * 6 * nu) and (features >= 0).all()
        expected = paper_feature_map(z, "dpfp", nu)
        torch.testing.assert_close(features / (features.sum(-1, keepdim=True) + EPS), expected, rtol=1e-12, atol=0)


def test_the_delta_rule_replaces_the_value_at_a_key_where_the_sum_rule_adds():
    """With β = 1 and a one-hot key, writing v1 then v2 at the same key leaves W k = v2 (linear attention's
    sum rule would retrieve v1 + v2); a write at an orthogonal key leaves it alone."""
    d, features = 3, 4
    k = torch.zeros(1, 1, 3, features, dtype=torch.float64)
    k[..., 0, 1] = k[..., 1, 1] = 1.0  # steps 0 and 1 write at key e_1
    k[..., 2, 2] = 1.0  # step 2 at the orthogonal key e_2
    v = torch.randn(1, 1, 3, d, dtype=torch.float64)
    beta = torch.ones(1, 1, 3, 1, dtype=torch.float64)
    q = k[..., 1:2, :].expand(1, 1, 3, features)  # read at e_1 every step
    w0 = torch.randn(1, 1, d, features, dtype=torch.float64)
    y, w = delta_rule_chunked(q, k, v, beta, w0, None, chunk=3)
    torch.testing.assert_close(y[0, 0, 0], v[0, 0, 0])  # written and read back
    torch.testing.assert_close(y[0, 0, 1], v[0, 0, 1])  # replaced, not summed
    torch.testing.assert_close(y[0, 0, 2], v[0, 0, 1])  # untouched by the orthogonal write
    torch.testing.assert_close(w[0, 0, :, 2], v[0, 0, 2])
    torch.testing.assert_close(w[0, 0, :, 0], w0[0, 0, :, 0])  # keys never written keep their column


def test_a_write_moves_the_value_at_its_key_towards_v_and_never_past_it():
    """W_t k_t = (1 − β‖k‖²) W_{t-1} k_t + β‖k‖² v_t, and sum-normalised keys have β‖k‖² <= 1."""
    torch.manual_seed(0)
    layer = TORSOS["fwp"](F_IN, H, head_dim=4).double().layers[0]
    k = layer.features(torch.randn(1, 2, 1, 4, dtype=torch.float64))  # (B, heads, T = 1, D)
    v, beta = torch.randn(1, 2, 1, 4, dtype=torch.float64), torch.rand(1, 2, 1, 1, dtype=torch.float64)
    w0 = torch.randn(1, 2, 4, layer.feature_dim, dtype=torch.float64)
    _, w1 = delta_rule_chunked(k, k, v, beta, w0, None, chunk=4)
    fraction = beta * k.square().sum(-1, keepdim=True)  # (1, 2, 1, 1)
    assert (fraction <= 1).all()
    before, after = (w0 @ k.transpose(-1, -2)).transpose(-1, -2), (w1 @ k.transpose(-1, -2)).transpose(-1, -2)
    torch.testing.assert_close(after, (1 - fraction) * before + fraction * v)


def test_state_size_and_defaults():
    torso = TORSOS["fwp"](8, 64)
    assert torso.state_size == 2048  # 4 heads of 16, DPFP-1: 16 x 32 each
    assert TORSOS["fwp"](8, 64, feature_map="relu").state_size == 1024
    assert (torso.layers[0].heads, torso.layers[0].feature_dim, torso.layers[0].chunk) == (4, 32, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"head_dim": 3}, "divisible by head_dim"), ({"head_dim": 0}, "divisible by head_dim"),
     ({"feature_map": "elu"}, "feature_map must be one of"), ({"nu": 0}, "nu >= 1"), ({"chunk": 0}, "chunk >= 1")],
)
def test_bad_options_are_one_line_torso_errors(kwargs, match):
    with pytest.raises(TorsoError, match=match):
        TORSOS["fwp"](F_IN, H, **kwargs)
