"""S5 (Smith, Warrington & Linderman, ICLR 2023, "Simplified State Space Layers for Sequence
Modeling"), resettable as in Lu et al., NeurIPS 2023 ("Structured State Space Models for In-Context
Reinforcement Learning"), as a scan torso.

A diagonal complex state space model, discretised per step with a learned timescale Δ (zero-order
hold), conjugate-symmetric (P complex modes stand for 2P real ones)::

    Λ̄   = exp(Λ Δ),   B̄ = Λ⁻¹ (Λ̄ - 1) B̃        Λ ∈ C^P (Re Λ < 0), Δ ∈ R^P_+, B̃ ∈ C^{P×I}
    h_t = Λ̄ ⊙ h_{t-1} + B̄ x_t
    y_t = 2·Re(C̃ h_t) + D x_t                     C̃ ∈ C^{H×P}, D ∈ R^{H×I}
    out = GELU(y_t) ⊙ σ(W GELU(y_t))              S5's weighted sigmoid gate

Initialisation (S5, Section 4.1 and appendix): Λ are the eigenvalues of the normal part of the
HiPPO-LegS matrix of size 2P/J (``-½ + iω``), in ``blocks`` = J diagonal blocks, keeping one of each
conjugate pair; ``B̃ = V⁻¹B`` and ``C̃ = C V`` with V the eigenvectors and B, C LeCun/truncated-style
Gaussians; ``log Δ ~ U(log 0.001, log 0.1)``. ``Re Λ`` is kept negative by storing
``log(-Re Λ)`` (S5 clips it instead). D is a matrix rather than S5's diagonal because the first
layer's input width differs from its output width (``nn.Linear`` default init). S5's pre-norm and
residual are left out (the policy's MLP follows the torso).

Defaults: ``state_dim = hidden_size`` (P complex modes), ``blocks = 1``, ``dt_min = 0.001``,
``dt_max = 0.1`` (S5's defaults).

State size: ``2·L·P`` reals (real and imaginary parts of h, interleaved); 128 at width 64.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.errors import TorsoError
from dream_rl.torsos.scan import ScanLayer, ScanTorso, complex_from_flat, flat_from_complex, linear_scan

__all__ = ["S5Torso", "S5Layer", "hippo_normal_eigen"]


def hippo_normal_eigen(size: int) -> tuple[Tensor, Tensor]:
    """Eigenvalues (size,) and eigenvectors (size, size) of the normal part of HiPPO-LegS, complex128.

    HiPPO-LegS ``A`` is ``-sqrt(2n+1)·sqrt(2k+1)`` below the diagonal, ``-(n+1)`` on it; adding
    ``p pᵀ`` with ``p_n = sqrt(n + ½)`` leaves ``-½ I`` plus a skew-symmetric matrix ``K``. So the
    eigenvalues are ``-½ + iω`` with ``ω`` the eigenvalues of the Hermitian ``-iK``.
    """
    n = torch.arange(size, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    skew = -0.5 * torch.outer(root, root) * torch.sign(n.reshape(-1, 1) - n.reshape(1, -1))
    omega, vectors = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    return torch.complex(torch.full_like(omega, -0.5), omega), vectors


class S5Layer(ScanLayer):
    """One S5 layer: (T, B, input_size) → (T, B, hidden_size); state h (B, P) complex, stored flat (B, 2P)."""

    def __init__(
        self, input_size: int, hidden_size: int, state_dim: int | None = None, blocks: int = 1,
        dt_min: float = 0.001, dt_max: float = 0.1,
    ) -> None:
        super().__init__()
        p = int(state_dim or hidden_size)
        if p < 1 or blocks < 1 or p % blocks or not 0 < dt_min <= dt_max:
            raise TorsoError(
                f"s5 needs state_dim >= 1 divisible by blocks >= 1 and 0 < dt_min <= dt_max; got state_dim={state_dim}, "
                f"blocks={blocks}, dt_min={dt_min}, dt_max={dt_max}"
            )
        self.state_dim, self.state_size = p, 2 * p
        per_block = p // blocks
        eig, vec = hippo_normal_eigen(2 * per_block)
        keep = eig.imag >= 0  # one of each conjugate pair (eigh sorts ω; exactly half are >= 0 for even size)
        keep_idx = torch.nonzero(keep).flatten()[:per_block]
        lam = eig[keep_idx].repeat(blocks)  # (P,)
        v = vec[:, keep_idx]  # (2p/J, p/J): the kept eigenvectors of one block
        # B (2P/J per block rows, I) LeCun normal, then B̃ = V⁻¹ B = Vᴴ B on the kept modes
        b_real = torch.randn(blocks, 2 * per_block, input_size, dtype=torch.float64) / math.sqrt(input_size)
        b_tilde = torch.einsum("km,jki->jmi", v.conj(), b_real.to(torch.complex128)).reshape(p, input_size)
        c_real = torch.randn(blocks, hidden_size, 2 * per_block, dtype=torch.float64) / math.sqrt(2 * per_block)
        c_tilde = torch.einsum("jhk,km->hjm", c_real.to(torch.complex128), v).reshape(hidden_size, p)
        self.lambda_re_log = nn.Parameter(torch.log(-lam.real).float())
        self.lambda_im = nn.Parameter(lam.imag.float())
        self.B = nn.Parameter(torch.view_as_real(b_tilde).permute(0, 2, 1).contiguous().float())  # (P, 2, I)
        self.C = nn.Parameter(torch.view_as_real(c_tilde).contiguous().float())  # (H, P, 2)
        self.log_dt = nn.Parameter(torch.empty(p).uniform_(math.log(dt_min), math.log(dt_max)))
        self.D = nn.Linear(input_size, hidden_size, bias=False)
        self.gate = nn.Linear(hidden_size, hidden_size)

    def discretised(self) -> tuple[Tensor, Tensor]:
        """Λ̄ (P,) complex and B̄ (P, 2, I) as real/imaginary parts, by zero-order hold."""
        lam = torch.complex(-torch.exp(self.lambda_re_log), self.lambda_im)
        lam_dt = lam * torch.exp(self.log_dt)
        lam_bar = torch.exp(lam_dt)
        scale = (lam_bar - 1) / lam  # (P,)
        b_re, b_im = self.B[:, 0], self.B[:, 1]
        s_re, s_im = scale.real.unsqueeze(1), scale.imag.unsqueeze(1)
        b_bar = torch.stack([s_re * b_re - s_im * b_im, s_re * b_im + s_im * b_re], dim=1)
        return lam_bar, b_bar

    def forward(self, x: Tensor, h0: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        steps, batch, _ = x.shape
        p = self.state_dim
        lam_bar, b_bar = self.discretised()
        b = torch.view_as_complex(F.linear(x, b_bar.reshape(2 * p, -1)).reshape(steps, batch, p, 2))
        h = linear_scan(lam_bar.reshape(1, 1, p), b, complex_from_flat(h0, p), starts)
        # 2·Re(C̃ h) = 2(C_re h_re - C_im h_im): one real matmul over the interleaved parts
        read = 2 * torch.stack([self.C[..., 0], -self.C[..., 1]], dim=-1).reshape(self.C.shape[0], 2 * p)
        y = F.gelu(F.linear(torch.view_as_real(h).reshape(steps, batch, 2 * p), read) + self.D(x))
        return y * torch.sigmoid(self.gate(y)), flat_from_complex(h[-1])


class S5Torso(ScanTorso):
    """``num_layers`` S5 layers of width ``hidden_size``; options ``state_dim``, ``blocks``, ``dt_min``,
    ``dt_max`` (see the module docstring). Flat state: h of every layer, real/imaginary interleaved."""

    # The step size range sets how much a step writes (S5's 0.001-0.1 suits long token sequences; mamba needed
    # about one unit per env step), and the number of modes the state's size.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "state_dim": {"type": "categorical", "choices": [32, 64, 128]},
        "dt_min": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
        "dt_max": {"type": "float", "low": 0.1, "high": 1.0, "log": True},
    }

    layer_options = ("state_dim", "blocks", "dt_min", "dt_max")

    def make_layer(self, input_size: int, hidden_size: int, **layer_kwargs: object) -> ScanLayer:
        return S5Layer(input_size, hidden_size, **layer_kwargs)  # type: ignore[arg-type]
