"""A positional MLP (POPGym's "PosMLP"): no memory of what was seen, only of how long ago the episode began.

Model: POPGym's ``MLP`` with its default sinusoidal step encoding (Morad et al., "POPGym: Benchmarking
Partially Observable Reinforcement Learning", ICLR 2023; ``popgym/baselines/ray_models/ray_mlp.py`` and
``base_model.py``). With ``p_t`` the index of step ``t`` in its episode (0 at the first step)::

    u_t   = LayerNorm(W_f x_t + b_f)                       feature map, no affine parameters, width H
    PE(p) = [sin(p·ω_0), cos(p·ω_0), sin(p·ω_1), cos(p·ω_1), ...]  (H entries),  ω_i = max_len^(-2i/H)
    z_t   = (1 - s)·u_t + s·PE(p_t)                        s in (0, 1), learned
    y_t   = LeakyReLU(W_2 LeakyReLU(W_1 z_t + b_1) + b_2)

Recurrence: ``p_t = p_{t-1} + 1``, and 0 at an episode start. The flat state is the count ``p`` of the
next step, a float: 0 (the initial state) at the first step of an episode, so zeros are the initial
state and a reset is exact. Counts stay exact integers up to 2^24 steps in float32. Knowing the step
is not remembering what was seen: on the T-maze the policy stays at chance like ``mlp``
(``tests/torsos/test_memoryless.py``).

Defaults: ``max_len=1024`` (POPGym builds its table for ``max_seq_len``, the 1024-step BPTT cut-off of
its PPO runs; the periods run from 2π steps up to nearly 2π·max_len, POPGym's ``log(max_len)`` in place
of the transformer's ``log(10000)``). ``s = 0.5`` at initialisation, as POPGym's ``embedding_strength``.
``num_layers`` repeats the two-layer block after the encoding (1 = POPGym's model), with ``dropout``
between blocks.

What differs from POPGym: ``s = σ(θ)`` with ``θ = 0`` at initialisation, where POPGym clamps a raw
parameter into [0, 1] in place on every forward call (a side effect on the parameters; the sigmoid keeps
``s`` inside the interval with a smooth gradient). The encoding is computed for any step index rather
than read from a table of ``max_len`` rows (equal entries for the indices the table holds), so an episode
longer than ``max_len`` steps does not fail. POPGym's feature map (linear + LayerNorm) belongs to
its shared base model; it is part of this torso because the encoding is added to normalised features of
width H. POPGym's orthogonal initialisation of linear layers is replaced by torch's default.

State size: 1 (the step count).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError
from dream_rl.torsos._popgym import popgym_core, reject_unknown_options
from dream_rl.torsos.base import RecurrentTorso, check_dropout

__all__ = ["PositionalMlpTorso", "sinusoidal_encoding"]


def sinusoidal_encoding(positions: Tensor, size: int, max_len: float) -> Tensor:
    """POPGym's encoding of step indices: ``positions`` (...) → (..., size); entry ``2i`` is
    ``sin(p·ω_i)``, entry ``2i+1`` is ``cos(p·ω_i)``, ``ω_i = max_len^(-2i/size)``."""
    pairs = (size + 1) // 2
    frequencies = torch.exp(
        torch.arange(pairs, dtype=positions.dtype, device=positions.device) * (-2.0 * math.log(max_len) / size)
    )
    angles = positions.unsqueeze(-1) * frequencies  # (..., pairs)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[..., :size]


class PositionalMlpTorso(RecurrentTorso):
    """Feature map, step encoding, then ``num_layers`` two-layer blocks of width ``hidden_size``.
    Flat state: the step count (B, 1). Options: ``max_len``, ``dropout``."""

    # The encoding's longest period (about 2π·max_len steps): the episode lengths it tells apart.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "max_len": {"type": "float", "low": 16.0, "high": 4096.0, "log": True},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        max_len: float = 1024,
        dropout: float = 0.0,
        **unknown: Any,
    ) -> None:
        super().__init__()
        reject_unknown_options("positional_mlp", unknown, ["max_len", "dropout"])
        self.num_layers = int(num_layers)  # a positive int: RecurrentTorso checks the sizes
        if not float(max_len) > 1.0 or not math.isfinite(float(max_len)):
            raise TorsoError(
                f"positional_mlp torso: max_len (the encoding's period scale, in steps) must be > 1, got {max_len}"
            )
        dropout = check_dropout("positional_mlp torso", dropout)
        self.input_size, self.output_size = int(input_size), int(hidden_size)
        self.max_len, self.dropout = float(max_len), float(dropout)
        self.feature_map = nn.Linear(self.input_size, self.output_size)
        self.norm = nn.LayerNorm(self.output_size, elementwise_affine=False)
        self.strength_logit = nn.Parameter(torch.zeros(()))  # s = σ(0) = 0.5, POPGym's initial strength
        self.blocks = nn.ModuleList(popgym_core(self.output_size, self.output_size) for _ in range(self.num_layers))
        self.state_size = 1

    def encode(self, features: Tensor, positions: Tensor) -> Tensor:
        """``features`` (T, B, input_size) and step indices ``positions`` (T, B) → outputs (T, B, H)."""
        u = self.norm(self.feature_map(features))
        s = torch.sigmoid(self.strength_logit)
        z = (1 - s) * u + s * sinusoidal_encoding(positions, self.output_size, self.max_len)
        for index, block in enumerate(self.blocks):
            if index and self.dropout:
                z = nn.functional.dropout(z, self.dropout, self.training)
            z = block(z)
        return z

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        steps = features.shape[0]
        offsets = torch.arange(steps, dtype=state.dtype, device=state.device).unsqueeze(1)  # (T, 1)
        positions = state[:, 0] + offsets  # (T, B)
        return self.encode(features, positions), state + steps

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        # The index of each step in its episode, in one pass: steps since the last start, or the
        # carried count plus the step for a sample with no start yet (selection: a NaN count is dropped).
        if starts.shape[0] == 1:  # a rollout step: the count, or 0 where the episode starts
            positions = torch.where(starts[0], torch.zeros((), dtype=state.dtype, device=state.device), state[:, 0])
            return self.encode(features, positions.unsqueeze(0)), positions.unsqueeze(1) + 1
        steps, batch = starts.shape
        index = torch.arange(steps, device=features.device).unsqueeze(1).expand(steps, batch)
        last_start = torch.where(starts, index, -1).cummax(dim=0).values  # (T, B)
        offsets = index.to(state.dtype)
        zero = torch.zeros((), dtype=state.dtype, device=state.device)
        carried = torch.where(starts[0], zero, state[:, 0])  # (B,): the count before step 0
        positions = torch.where(last_start >= 0, (index - last_start).to(state.dtype), carried + offsets)
        return self.encode(features, positions), (positions[-1] + 1).unsqueeze(1)
