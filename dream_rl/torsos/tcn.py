"""A temporal convolution network (POPGym's "TCN"): a causal convolution over the last ``k`` steps.

Model: POPGym's ``Frameconv`` (Morad et al., "POPGym: Benchmarking Partially Observable Reinforcement
Learning", ICLR 2023; ``popgym/baselines/ray_models/ray_frameconv.py``), after the temporal convolution
networks of Bai, Kolter and Koltun ("An Empirical Evaluation of Generic Convolutional and Recurrent
Networks for Sequence Modeling", arXiv:1803.01271, 2018). One layer is a causal ``nn.Conv1d`` of
kernel ``k`` and dilation ``d`` from its input channels to ``H`` outputs::

    y_t = b + Σ_{i=0}^{k-1} W_i x_{t-(k-1-i)·d}        W_i (H, C); x_s = 0 before the episode's first step

POPGym's model is one such layer with ``d = 1``, no activation after it. With ``num_layers = L``
layers, layer ``l`` (from 0) has dilation ``2^l`` as in Bai et al.'s TCN, and a LeakyReLU (and
``dropout``) sits between layers; the receptive field is ``1 + (k-1)·(2^L - 1)`` steps.

Recurrence: the flat state holds each layer's last ``(k-1)·2^l`` inputs, oldest first, layer by layer:
all zeros at an episode start (POPGym pads the window with zeros), so zeros are the initial state and
a reset is exact. A sequence call computes every step's window from ``[state; inputs]`` at once; a tap
that crosses an episode start reads zero. The memory reaches ``k - 1`` steps back with one layer.

Defaults: ``k = 4`` (POPGym's ``stack_size``, the same window as its frame stacking), ``num_layers = 1``
(POPGym's single convolution). Initialisation: ``nn.Conv1d``'s (uniform in ``±1/sqrt(k·C)``).

What differs from POPGym: POPGym adds its sinusoidal step encoding to the inputs by default; here the
convolution sees the inputs only, so the window is its whole memory. POPGym's shared feature map in
front of every model is not part of the torso (the policy's features extractor comes first). The
convolution is computed as one linear map of the stacked window (the same function and the same
initialisation as ``nn.Conv1d``: ``W[h, c, i]`` is ``linear.weight[h, i·C + c]``), which lets a rollout
step and a training sequence share one code path. Bai et al.'s residual blocks (two convolutions, weight
normalisation, a 1x1 skip) are not used: POPGym's TCN is the single convolution.

State size: ``(k-1)·input_size`` for one layer (9 for the T-maze's 3 features with ``k = 4``), plus
``(k-1)·2^l·H`` for each further layer ``l``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.torsos._popgym import causal_window, reject_unknown_options
from dream_rl.torsos.base import RecurrentTorso, check_dropout, check_size

__all__ = ["TcnTorso", "CausalConvLayer"]


class CausalConvLayer(nn.Module):
    """One dilated causal convolution: ``(x (T, B, C), past (B, (k-1)·d·C), starts)`` → ``(y (T, B, H), past)``."""

    def __init__(self, input_size: int, hidden_size: int, k: int, dilation: int) -> None:
        super().__init__()
        self.k, self.dilation, self.input_size = k, dilation, input_size
        self.linear = nn.Linear(k * input_size, hidden_size)  # Conv1d(C, H, k)'s fan-in and initialisation
        self.state_size = (k - 1) * dilation * input_size

    def forward(self, x: Tensor, past: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        window, past = causal_window(x, past, starts, self.k, self.dilation)  # (T, B, k, C)
        return self.linear(window.flatten(2)), past

    def conv_weight(self) -> Tensor:
        """The weight as ``nn.Conv1d`` holds it: (H, C, k), tap ``i = k-1`` the current step."""
        return self.linear.weight.reshape(-1, self.k, self.input_size).transpose(1, 2)


class TcnTorso(RecurrentTorso):
    """``num_layers`` causal convolutions of kernel ``k``, layer ``l`` dilated by ``2^l``, width ``hidden_size``.
    Flat state: every layer's last inputs. Options: ``k``, ``dropout``."""

    # The window k, the torso's whole memory: 2 to 32 steps (the quick T-maze's corridor is 10).
    search_space: ClassVar[dict[str, dict[str, Any]]] = {
        "k": {"type": "int", "low": 2, "high": 32, "log": True},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        k: int = 4,
        dropout: float = 0.0,
        **unknown: Any,
    ) -> None:
        super().__init__()
        reject_unknown_options("tcn", unknown, ["k", "dropout"])
        self.num_layers = int(num_layers)  # a positive int: RecurrentTorso checks the sizes
        self.k = check_size("tcn torso", "k", k)
        dropout = check_dropout("tcn torso", dropout)
        self.input_size, self.output_size, self.dropout = int(input_size), int(hidden_size), float(dropout)
        widths = [self.input_size] + [self.output_size] * (self.num_layers - 1)
        self.layers = nn.ModuleList(
            CausalConvLayer(width, self.output_size, self.k, 2**index) for index, width in enumerate(widths)
        )
        self.layer_sizes = [layer.state_size for layer in self.layers]
        self.state_size = sum(self.layer_sizes)

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self._convolve(features, state, None)

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        return self._convolve(features, state, starts)

    def _convolve(self, x: Tensor, state: Tensor, starts: Tensor | None) -> tuple[Tensor, Tensor]:
        pasts = []
        for index, (layer, past) in enumerate(zip(self.layers, torch.split(state, self.layer_sizes, dim=1))):
            if index:
                x = nn.functional.leaky_relu(x)
                if self.dropout:
                    x = nn.functional.dropout(x, self.dropout, self.training)
            x, past = layer(x, past, starts)
            pasts.append(past)
        return x, torch.cat(pasts, dim=1)
