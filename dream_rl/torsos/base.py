"""The torso interface: a recurrent memory over a flat state, with exact episode resets.

A torso maps a feature sequence to an output sequence while carrying a *flat* state: one float
vector per sequence, all zeros exactly at the initial state. Plain tensors, time-major like
``nn.LSTM``::

    out, state = torso(features, state, episode_starts)
    # features (T, B, input_size), state (B, state_size), episode_starts (T, B) of 0/1
    # out (T, B, output_size), state (B, state_size)

Because zeros are the initial state, resetting sequence ``b`` before step ``t`` sets ``state[b]``
to zeros. It is done by selection (``torch.where``), not by multiplying with ``1 - start``: a
non-finite value in a finished episode's state must not survive the reset (0 * NaN = NaN).
"""

from __future__ import annotations

import functools
import inspect
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dream_rl.errors import TorsoError

__all__ = [
    "RecurrentTorso", "StackedTorso", "reset_where", "check_dropout", "check_size", "dtype_method",
    "LEARNING_RATE_SCALE_SPACE",
]

# The sizes every torso constructor takes, checked once for all of them (RecurrentTorso.__init_subclass__).
SIZE_ARGUMENTS = ("input_size", "hidden_size", "num_layers")

# The dimension every torso's tuning adds to its own search space (RecurrentTorso.search_space): the
# multiple of the env's PPO learning rate used by that torso's runs (PolicyConfig.learning_rate_scale).
# Log-uniform from a quarter to four times: the board's learning rates were tuned once, with the LSTM, and
# given 0.5x, 1x and 2x, eleven of sixteen torsos chose 2x, the top of that range (docs/leaderboard.md).
LEARNING_RATE_SCALE_SPACE: dict[str, Any] = {"type": "float", "low": 0.25, "high": 4.0, "log": True}

# The nn.Module method that converts a module's parameters to each floating dtype.
_DTYPE_METHODS = {torch.float32: "float", torch.float64: "double", torch.float16: "half", torch.bfloat16: "bfloat16"}


def dtype_method(dtype: torch.dtype) -> str:
    """The conversion method for ``dtype``: ``"float"`` for float32, ``"double"`` for float64, and so on."""
    return _DTYPE_METHODS.get(dtype, f"to({dtype})")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_dropout(torso: str, value: Any) -> float:
    """``value`` as a float if it is a real number in [0, 1) (not a bool), else a :class:`TorsoError`
    naming ``torso``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) < 1.0:
        raise TorsoError(f"{torso}: dropout must be in [0, 1), got {value!r}")
    return float(value)


def check_size(torso: str, name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (Python or NumPy; not a bool or a float), else a
    :class:`TorsoError` naming ``torso`` and the argument ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise TorsoError(f"{torso}: {name} must be a positive int, got {value!r}")
    return int(value)


def _checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` preceded by :func:`check_size` on the size arguments it names (it keeps its signature)."""
    signature = inspect.signature(init)
    checked = [name for name in SIZE_ARGUMENTS if name in signature.parameters]

    @functools.wraps(init)
    def __init__(self: RecurrentTorso, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind_partial(self, *args, **kwargs).arguments
        except TypeError:
            bound = {}  # a wrong call: the constructor itself says what is wrong
        for name in checked:
            if name in bound:
                check_size(type(self).__name__, name, bound[name])
        init(self, *args, **kwargs)

    return __init__


def reset_where(state: Tensor, starts: Tensor) -> Tensor:
    """``state`` (B, P) with the rows where ``starts`` (B,) is nonzero replaced by zeros."""
    return torch.where(starts.reshape(-1, 1) != 0, torch.zeros((), dtype=state.dtype, device=state.device), state)


class RecurrentTorso(nn.Module, ABC):
    """Base class of the recurrent feature extractors.

    Subclasses set ``input_size``, ``output_size`` and ``state_size`` in ``__init__`` and
    implement :meth:`run`, the reset-free sequence computation. :meth:`forward` adds episode
    resets by cutting the sequence where an episode starts; a subclass that can fold resets into
    its own computation (the scan torsos: a reset zeroes the decay) overrides
    :meth:`run_with_resets` instead.

    Every torso takes ``(input_size, hidden_size, num_layers=1, **model_kwargs)``; each of the three
    sizes must be a positive int, which every subclass's constructor checks before it runs.

    :meth:`forward` checks its inputs: shapes, and features and state of the parameters' floating
    dtype and device (no silent casting). An empty batch (B = 0) gives empty outputs.
    """

    input_size: int
    output_size: int
    state_size: int

    #: The torso's own options worth tuning, at most a few: constructor keyword (a ``torso_kwargs`` key)
    #: → distribution in the format of ``dream-rl tune`` (``{type: float|int, low, high, log?}`` or
    #: ``{type: categorical, choices: [...]}``). Every value in range (each end, each choice) must build
    #: the torso at the board's width, 64. The equal-budget protocol (``scripts/make_tuning_configs.py``)
    #: adds :data:`LEARNING_RATE_SCALE_SPACE` for every torso and gives each the same number of trials,
    #: whatever the size of its space; a torso without options worth tuning keeps this empty default.
    #: Read it, never change it in place: the default is shared by the subclasses that keep it.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            cls.__init__ = _checked_init(vars(cls)["__init__"])  # type: ignore[method-assign]

    def initial_state(
        self, batch_size: int, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The initial flat state: zeros of shape (batch_size, state_size)."""
        return torch.zeros(batch_size, self.state_size, device=device, dtype=dtype)

    def forward(
        self, features: Tensor, state: Tensor, episode_starts: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Run a sequence, resetting each sequence's state where its episode starts.

        Args:
            features: (T, B, input_size).
            state: (B, state_size), the state before the first step.
            episode_starts: (T, B), nonzero where step t starts a new episode (the state is reset
                before step t); None: no resets.
        Returns:
            out (T, B, output_size) and the state after the last step (B, state_size).
        """
        self._check(features, state, episode_starts)
        if features.shape[1] == 0:
            return self._empty_batch(features, state)
        if episode_starts is None:
            return self.run(features, state)
        return self.run_with_resets(features, state, episode_starts != 0)

    @abstractmethod
    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence computation with no resets: (T, B, input_size), (B, state_size) →
        (T, B, output_size), (B, state_size)."""

    def run_with_resets(self, features: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence computation with resets; ``starts`` (T, B) bool.

        RecurrentPPO starts episodes only at position 0 of a training sequence, so the common case
        is one :meth:`run` call; otherwise the sequence is cut at every step where any episode starts.
        """
        state = reset_where(state, starts[0])
        later = starts[1:].any(dim=1)  # (T-1,)
        if not bool(later.any()):
            return self.run(features, state)
        cuts = [0, *(torch.nonzero(later).flatten() + 1).tolist(), features.shape[0]]
        outputs = []
        for start, stop in zip(cuts[:-1], cuts[1:]):
            if start > 0:
                state = reset_where(state, starts[start])
            out, state = self.run(features[start:stop], state)
            outputs.append(out)
        return torch.cat(outputs), state

    def _empty_batch(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The outputs of a batch of zero sequences: (T, 0, output_size) and (0, state_size), connected
        to the parameters (a loss over them backpropagates zeros rather than failing)."""
        anchor = sum((p.reshape(-1)[:1].sum() * 0 for p in self.parameters() if p.is_floating_point()), features.sum())
        out = features.new_zeros(features.shape[0], 0, self.output_size) + anchor
        return out, state.new_zeros(0, self.state_size) + anchor.to(state.dtype)

    def _check(self, features: Tensor, state: Tensor, episode_starts: Tensor | None) -> None:
        name = type(self).__name__
        if not isinstance(features, Tensor) or not isinstance(state, Tensor):
            raise TorsoError(
                f"{name} expects features and state as torch tensors, got {type(features).__name__} and "
                f"{type(state).__name__}"
            )
        if features.dim() != 3 or features.shape[2] != self.input_size:
            raise TorsoError(
                f"{name} expects features of shape (time, batch, {self.input_size}), got {tuple(features.shape)}"
            )
        if features.shape[0] == 0:
            raise TorsoError(f"{name} got an empty sequence (time = 0): pass at least one step")
        if state.shape != (features.shape[1], self.state_size):
            raise TorsoError(
                f"{name} expects a state of shape (batch={features.shape[1]}, {self.state_size}), "
                f"got {tuple(state.shape)}; start from initial_state(batch)"
            )
        if episode_starts is not None and (
            not isinstance(episode_starts, Tensor) or episode_starts.shape != features.shape[:2]
        ):
            shape = tuple(episode_starts.shape) if isinstance(episode_starts, Tensor) else type(episode_starts).__name__
            raise TorsoError(
                f"{name} expects episode_starts of shape (time, batch) = {tuple(features.shape[:2])}, got {shape}"
            )
        self._check_dtype(features, state)

    def _check_dtype(self, features: Tensor, state: Tensor) -> None:
        """Features and state must have the parameters' floating dtype and device: a mismatch is one
        line naming both, never a matmul error deep inside (or a silent cast of the state)."""
        name = type(self).__name__
        parameter = next((p for p in self.parameters() if p.is_floating_point()), None)
        dtype = parameter.dtype if parameter is not None else torch.get_default_dtype()
        want = _dtype_name(dtype)
        if features.dtype != dtype:
            fix = f"cast with features.{dtype_method(dtype)}()"
            if features.dtype.is_floating_point:
                fix += f" or convert the torso with .{dtype_method(features.dtype)}()"
            raise TorsoError(f"{name} expects {want} features, got {_dtype_name(features.dtype)}; {fix}")
        if state.dtype != dtype:
            raise TorsoError(
                f"{name} expects a {want} state, got {_dtype_name(state.dtype)}; start from "
                f"initial_state(batch, dtype=torch.{want}) or cast with state.{dtype_method(dtype)}()"
            )
        if parameter is not None and (features.device != parameter.device or state.device != parameter.device):
            raise TorsoError(
                f"{name} is on {parameter.device}, got features on {features.device} and state on {state.device}; "
                f"move them with .to({str(parameter.device)!r})"
            )


class StackedTorso(RecurrentTorso):
    """``num_layers`` layers of width ``hidden_size``, each feeding the next, with dropout between
    them as in ``nn.LSTM`` (RecurrentPPO passes it through ``lstm_kwargs``). Each layer has a
    ``state_size`` and is called ``layer(x (T, B, in), layer_state (B, state_size), *extra)`` →
    ``(y (T, B, hidden_size), new layer_state)``; the flat state concatenates the layers' states.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        make_layer: Callable[[int], nn.Module],
    ) -> None:
        """``make_layer(width)`` builds one layer over ``width`` input features."""
        super().__init__()
        dropout = check_dropout(type(self).__name__, dropout)
        self.input_size, self.output_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        widths = [self.input_size] + [self.output_size] * (self.num_layers - 1)
        self.layers = nn.ModuleList(make_layer(width) for width in widths)
        self.dropout = dropout
        self.layer_sizes = [layer.state_size for layer in self.layers]
        self.state_size = sum(self.layer_sizes)

    def run(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.run_layers(features, state)

    def run_layers(self, x: Tensor, state: Tensor, *extra: object) -> tuple[Tensor, Tensor]:
        """Every layer in turn, each from its slice of ``state``; ``extra`` goes to every layer."""
        last_states = []
        for index, (layer, layer_state) in enumerate(zip(self.layers, torch.split(state, self.layer_sizes, dim=1))):
            if index and self.dropout:
                x = nn.functional.dropout(x, self.dropout, self.training)
            x, layer_state = layer(x, layer_state, *extra)
            last_states.append(layer_state)
        return x, torch.cat(last_states, dim=1)
