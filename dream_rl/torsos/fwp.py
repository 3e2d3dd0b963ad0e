"""The fast weight programmer with the delta rule (Schlag, Irie & Schmidhuber, ICML 2021, "Linear
Transformers Are Secretly Fast Weight Programmers"), as a torso.

Model (per layer, per head of ``d`` units; ``D`` = the feature map's width)::

    k_t = φ(W_k x_t),  q_t = φ(W_q x_t)         φ = DPFP_ν (default) or ReLU, then sum-normalised
    v_t = W_v x_t,     β_t = σ(w_β · x_t)        a value and a write strength per head
    W_t = W_{t-1} + β_t (v_t − W_{t-1} k_t) k_tᵀ   the delta rule: W ∈ R^{d×D}, the fast weights
    y_t = W_t q_t                                 read after the write (heads concatenated, width H)
    out_t = y_t + W_s x_t                         a linear shortcut (the block's residual)

The delta rule replaces the value stored at key ``k_t`` by ``v_t`` (with strength ``β_t``) instead of
adding to it, as the sum rule of linear attention does. The feature map is the paper's DPFP
("deterministic parameter-free projection")::

    r(z) = [ReLU(z), ReLU(−z)] ∈ R^{2d},   DPFP_ν(z)_{(j, i)} = r_i(z) · r_{i+j mod 2d}(z),  j = 1..ν,  ∈ R^{2dν}

and keys and queries are divided by the sum of their features (the paper's sum normalisation,
``+ 1e-6``): a key then has ``‖k‖² <= 1``, so a write moves the value read at ``k_t`` a fraction
``β_t ‖k_t‖² <= 1`` of the way to ``v_t`` and never past it,
``W_t k_t = (1 − β_t ‖k_t‖²) W_{t-1} k_t + β_t ‖k_t‖² v_t``. ``feature_map="relu"`` (``D = d``) is
POPGym's FWP feature map.

A training sequence runs chunk by chunk (the chunkwise delta rule of Yang et al., NeurIPS 2024,
"Parallelizing Linear Transformers with the Delta Rule over Sequence Length"). Inside a chunk of ``C``
steps the writes ``W_t = W_0 + Σ_{i<=t} u_i k_iᵀ`` have pseudo-values ``u_t = β_t (v_t − W_{t-1} k_t)``
that solve one unit lower-triangular system, ``(I + diag(β) tril₋₁(K Kᵀ)) U = diag(β) (V − K W_0ᵀ)``,
and then ``Y = Q W_0ᵀ + tril(Q Kᵀ) U`` and ``W_C = W_0 + Uᵀ K``: a few matmuls per chunk instead of
``C`` dependent steps, exact up to rounding. Episode starts inside a chunk are masks on its pairwise
products (see :func:`delta_rule_chunked`), so resets need no cut of the sequence.
A rollout step (``T = 1``) applies the recurrence itself.

Changes from the paper's layer, and why: the paper puts the fast weight memory inside a Transformer
block (output projection, LayerNorm, feed-forward, residual); here it is followed by a linear shortcut
only, as in the linear_attention torso: SB3's policy puts its own MLP (``net_arch``) right after the
torso, and a LayerNorm over a few raw observation features erases information. POPGym's FWP baseline
differs more: it uses the sum rule (no delta rule) with ReLU features and one ``√H × √H`` matrix;
the model here is the paper's. Initialisation: ``nn.Linear``'s default (the paper prescribes none);
``W_q, W_k, W_v, w_β`` have no bias, as in the paper.

Defaults: ``head_dim = min(16, H)`` (``H`` divisible by it), ``feature_map = "dpfp"``, ``nu = 1``
(``D = 2d``), ``chunk = 16``.

State size: ``L·H·D`` (the fast weights of every head); 2048 at width 64 (4 heads of 16, DPFP-1:
``D = 32``), 1024 with ``feature_map="relu"``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import ScanLayer, ScanTorso

__all__ = ["FwpLayer", "FwpTorso", "dpfp", "delta_rule_chunked"]

EPS = 1e-6
FEATURE_MAPS = ("dpfp", "relu")


def dpfp(z: Tensor, nu: int) -> Tensor:
    """The paper's DPFP_ν: (..., d) → (..., 2·d·ν), features ``r_i · r_{i+j}`` (indices mod 2d) for
    ``j = 1..ν``, ``r = [ReLU(z), ReLU(−z)]``."""
    r = torch.cat([F.relu(z), F.relu(-z)], dim=-1)
    return torch.cat([r * torch.roll(r, shifts=-j, dims=-1) for j in range(1, nu + 1)], dim=-1)  # r_i · r_{i+j}


def sum_normalised(features: Tensor) -> Tensor:
    """Features divided by their sum (+ EPS): nonnegative, summing to at most 1."""
    return features / (features.sum(dim=-1, keepdim=True) + EPS)


def delta_rule_chunked(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, w0: Tensor, starts: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    """Outputs ``W_t q_t`` and the last fast weights of ``W_t = W_{t-1} + β_t (v_t − W_{t-1} k_t) k_tᵀ``,
    with ``W`` reset to zeros before every step where an episode starts.

    Args:
        q, k: (B, heads, T, D) feature-mapped queries and keys.
        v: (B, heads, T, d) values.
        beta: (B, heads, T, 1) write strengths.
        w0: (B, heads, d, D) the fast weights before step 0.
        starts: (T, B) bool, True where an episode starts before step t; None: none.
        chunk: steps per chunk.
    Returns:
        y (B, heads, T, d) and the fast weights after the last step (B, heads, d, D).

    Inside a chunk, ``live[t, i]`` (step i's write reaches step t: i <= t, no start in (i, t]) masks the
    pairwise products and ``clean[t]`` (no start in [chunk start, t]) selects whether the entering
    weights reach step t. The masks are applied to every sample, with or without starts, so a sample's
    values never depend on where other samples' episodes start; the entering weights are selected
    (``torch.where``), so a non-finite state from a finished episode does not leak.
    """
    batch, _, steps, _ = q.shape
    zero = torch.zeros((), dtype=q.dtype, device=q.device)
    starts_bm = starts.transpose(0, 1) if starts is not None else None  # (B, T)
    outputs = []
    w = w0
    for begin in range(0, steps, chunk):
        stop = min(begin + chunk, steps)
        length = stop - begin
        qc, kc, vc, bc = q[:, :, begin:stop], k[:, :, begin:stop], v[:, :, begin:stop], beta[:, :, begin:stop]
        causal = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        if starts_bm is None:
            live = causal.expand(batch, 1, length, length)
            clean = torch.ones(batch, 1, length, 1, dtype=torch.bool, device=q.device)
        else:
            count = starts_bm[:, begin:stop].long().cumsum(-1)  # starts in [chunk start, t], (B, C)
            live = ((count.unsqueeze(-1) == count.unsqueeze(-2)) & causal).unsqueeze(1)  # (B, 1, C, C)
            clean = (count == 0).reshape(batch, 1, length, 1)
        live = live.to(q.dtype)
        entering = torch.where(clean, kc @ w.transpose(-1, -2), zero)  # W_0 k_t where W_0 reaches step t
        # pseudo-values: u_t + β_t Σ_{i<t, live} (k_t·k_i) u_i = β_t (v_t − W_0 k_t), unit lower-triangular
        rhs = bc * (vc - entering)  # (B, heads, C, d)
        if length > 1:
            strict = live * (1 - torch.eye(length, dtype=q.dtype, device=q.device))
            system = torch.eye(length, dtype=q.dtype, device=q.device) + (kc @ kc.transpose(-1, -2)) * strict * bc
            u = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
        else:  # one step: the recurrence itself
            u = rhs
        y = torch.where(clean, qc @ w.transpose(-1, -2), zero) + ((qc @ kc.transpose(-1, -2)) * live) @ u
        w = torch.where(clean[:, :, -1:], w, zero) + (u * live[:, :, -1].unsqueeze(-1)).transpose(-1, -2) @ kc
        outputs.append(y)
    return torch.cat(outputs, dim=2), w


class FwpLayer(ScanLayer):
    """One fast weight layer: ``forward(x (T, B, I), state (B, H·D), starts (T, B) | None)`` →
    ``(out (T, B, H), state)``; the state is the fast weights ``W`` (B, heads, d, D), flat."""

    def __init__(
        self, input_size: int, hidden_size: int, head_dim: int | None = None, feature_map: str = "dpfp",
        nu: int = 1, chunk: int = 16,
    ) -> None:
        super().__init__()
        head_dim = int(min(16, hidden_size) if head_dim is None else head_dim)
        if head_dim < 1 or hidden_size % head_dim:
            raise TorsoError(
                f"fwp needs hidden_size ({hidden_size}) divisible by head_dim ({head_dim}); "
                "pass head_dim=... that divides the width"
            )
        if feature_map not in FEATURE_MAPS:
            raise TorsoError(f"fwp: feature_map must be one of {list(FEATURE_MAPS)}, got {feature_map!r}")
        if int(nu) < 1 or int(chunk) < 1:
            raise TorsoError(f"fwp needs nu >= 1 and chunk >= 1, got nu={nu}, chunk={chunk}")
        self.hidden_size, self.head_dim, self.heads = hidden_size, head_dim, hidden_size // head_dim
        self.feature_map, self.nu, self.chunk = feature_map, int(nu), int(chunk)
        self.feature_dim = 2 * head_dim * self.nu if feature_map == "dpfp" else head_dim
        # [q | k | v | β logits] in one matmul, no bias (the paper's projections)
        self.proj = nn.Linear(input_size, 3 * hidden_size + self.heads, bias=False)
        self.shortcut = nn.Linear(input_size, hidden_size)
        self.state_size = self.heads * head_dim * self.feature_dim

    def features(self, z: Tensor) -> Tensor:
        """φ: (..., d) → (..., D), sum-normalised."""
        return sum_normalised(dpfp(z, self.nu) if self.feature_map == "dpfp" else F.relu(z))

    def forward(self, x: Tensor, state: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        heads, d, width = self.heads, self.head_dim, self.hidden_size
        q, k, v, beta = self.proj(x).split([width, width, width, heads], dim=-1)

        def head_major(t: Tensor) -> Tensor:  # (T, B, heads·n) → (B, heads, T, n)
            return t.reshape(steps, batch, heads, -1).permute(1, 2, 0, 3)

        q, k = self.features(head_major(q)), self.features(head_major(k))
        w0 = state.reshape(batch, heads, d, self.feature_dim)
        v, beta = head_major(v), torch.sigmoid(head_major(beta))
        if steps == 1:  # a rollout step: the delta rule itself
            if starts is not None:
                zero = torch.zeros((), dtype=w0.dtype, device=w0.device)
                w0 = torch.where(starts[0].reshape(batch, 1, 1, 1), zero, w0)
            w = w0 + (beta * (v - k @ w0.transpose(-1, -2))).transpose(-1, -2) @ k  # (B, heads, d, D)
            y = q @ w.transpose(-1, -2)
        else:
            y, w = delta_rule_chunked(q, k, v, beta, w0, starts, self.chunk)
        out = y.permute(2, 0, 1, 3).reshape(steps, batch, width) + self.shortcut(x)
        return out, w.reshape(batch, self.state_size)


class FwpTorso(ScanTorso):
    """``num_layers`` fast weight layers of width ``hidden_size``; options ``head_dim`` (default
    ``min(16, hidden_size)``, must divide it), ``feature_map`` (``"dpfp"``, the paper's, or ``"relu"``,
    POPGym's), ``nu`` (DPFP's ν: feature width ``2·head_dim·ν``), ``chunk`` (steps per chunk). Flat state:
    the fast weights of every head and layer."""

    # Heads of the fast weights and the key/query feature map (DPFP or the ReLU of POPGym's FWP).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "head_dim": {"type": "categorical", "choices": [8, 16, 32]},
        "feature_map": {"type": "categorical", "choices": ["dpfp", "relu"]},
    }

    layer_options = ("head_dim", "feature_map", "nu", "chunk")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: Any) -> ScanLayer:
        return FwpLayer(input_size, hidden_size, **layer_kwargs)
