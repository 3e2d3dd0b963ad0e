"""Recurrent actor-critic policies for sb3-contrib's RecurrentPPO, with any torso as memory.

``RecurrentPPO`` is used as it ships. It allocates states as if the policy held an ``nn.LSTM``:
a pair ``(h, c)`` of shape ``(lstm.num_layers, n_envs, lstm.hidden_size)`` per network, zeros at
the start. :class:`PackedStateTorso` presents a torso that way: its flat state (zeros = initial
state) is split across ``h`` and ``c`` of one "layer", so the rollout buffer stores it at no
extra cost and RecurrentPPO's zero-initialisation and resets are exact.

One generic policy, :class:`MlpTorsoPolicy` (and its ``Cnn``/``MultiInput`` forms), takes any
registered memory by name: ``torso="ffm"`` with ``torso_kwargs={...}`` (see :data:`dream_rl.TORSOS`).
It keeps the stock constructor arguments with their stock meaning (``lstm_hidden_size``: the torso's
width, ``n_lstm_layers``, ``shared_lstm``, ``enable_critic_lstm``, ``lstm_kwargs``: extra arguments of
the recurrent layers, merged into ``torso_kwargs``). The named DREAM, GRU and LSTM policies are
presets of it; ``MlpDreamPolicy`` takes its DREAM options as ``dream_kwargs``.

Importing this module adds every policy name to ``RecurrentPPO.policy_aliases``, so
``RecurrentPPO("MlpDreamPolicy", env)`` works like SB3's own policy strings.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections import OrderedDict
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from dream_rl.errors import DREAMError, PolicyError
from dream_rl.torsos import TORSOS, RecurrentTorso

__all__ = [
    "PackedStateTorso",
    "RecurrentTorsoPolicy",
    "MlpTorsoPolicy",
    "CnnTorsoPolicy",
    "MultiInputTorsoPolicy",
    "RL_DREAM_DEFAULTS",
    "MlpDreamPolicy",
    "CnnDreamPolicy",
    "MultiInputDreamPolicy",
    "MlpGruPolicy",
    "CnnGruPolicy",
    "MultiInputGruPolicy",
    "MlpLstmTorsoPolicy",
    "CnnLstmTorsoPolicy",
    "MultiInputLstmTorsoPolicy",
    "POLICIES",
    "check_observation",
    "check_positive_int",
]

LstmStates = tuple[th.Tensor, th.Tensor]


class PackedStateTorso(nn.Module):
    """A torso seen by RecurrentPPO as a one-layer LSTM whose ``(h, c)`` hold its flat state.

    ``hidden_size`` is half the flat state size (rounded up; an odd size pads one zero).
    """

    num_layers = 1

    def __init__(self, torso: RecurrentTorso) -> None:
        super().__init__()
        self.torso = torso
        self.input_size = torso.input_size
        self.hidden_size = math.ceil(torso.state_size / 2)

    def forward(self, features: th.Tensor, states: LstmStates, episode_starts: th.Tensor) -> tuple[th.Tensor, LstmStates]:
        """features (T, B, F), states ``(h, c)`` each (1, B, hidden_size), episode_starts (T, B)."""
        flat = th.cat([states[0][0], states[1][0]], dim=1)[:, : self.torso.state_size]  # (B, P)
        out, flat = self.torso(features, flat, episode_starts)
        if flat.shape[1] % 2:
            flat = nn.functional.pad(flat, (0, 1))
        h, c = flat.unsqueeze(0).chunk(2, dim=2)
        return out, (h, c)


def check_observation(obs: th.Tensor | dict[str, th.Tensor]) -> None:
    """Raise :class:`DREAMError` if an observation holds NaN or inf, naming the env index (the batch
    row: during rollouts and ``predict`` one row per env) and, for Dict observations, the key.
    One reduction per tensor."""
    items = obs.items() if isinstance(obs, dict) else [(None, obs)]
    for key, value in items:
        if not isinstance(value, th.Tensor) or not value.dtype.is_floating_point or bool(th.isfinite(value).all()):
            continue
        rows = (~th.isfinite(value.detach())).reshape(value.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
        where = f" (key {key!r})" if key is not None else ""
        raise DREAMError(
            f"a non-finite observation (NaN or inf){where} reached the policy at env index {rows[0]}"
            + (f" (and {len(rows) - 1} more)" if len(rows) > 1 else "")
            + "; fix that env's observations (stable_baselines3's VecCheckNan wrapper finds the step that made them)"
        )


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (Python or NumPy; not a bool, a float or a string),
    else a :class:`PolicyError` naming the argument ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise PolicyError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _torso_keys(keys: Any, prefix: str) -> set[str]:
    """The parameter names under ``prefix`` with every layer index replaced by ``#`` (a signature of the torso)."""
    return {re.sub(r"\d+", "#", key[len(prefix) :]) for key in keys if key.startswith(prefix)}


def _identify_torso(state_dict: Any, prefix: str) -> str | None:
    """The registered torso whose parameter names (layer indices aside) are those under ``prefix`` in
    ``state_dict``, if exactly one is. The torch RNNs share their names; their gate count (the rows of
    ``weight_hh`` over its columns: 4 for the LSTM, 3 for the GRU, 1 for Elman) tells them apart."""
    keys = _torso_keys(state_dict, prefix)

    def gates(weights: Any, key: str) -> int | None:
        weight = weights.get(key)
        return weight.shape[0] // weight.shape[1] if isinstance(weight, th.Tensor) and weight.dim() == 2 else None

    matches = []
    for name, torso_class in TORSOS.items():
        try:
            candidate = torso_class(2, 8, 2, **TORSO_RL_DEFAULTS.get(name, {}))
        except Exception:  # noqa: BLE001 - a torso that cannot be built at this size is no candidate
            continue
        weights = candidate.state_dict()
        if _torso_keys(weights, "") == keys and gates(weights, "rnn.weight_hh_l0") == gates(
            state_dict, prefix + "rnn.weight_hh_l0"
        ):
            matches.append(name)
    return matches[0] if len(matches) == 1 else None


class RecurrentTorsoPolicy(RecurrentActorCriticPolicy):
    """RecurrentPPO policy whose actor (and critic) memory is a :class:`RecurrentTorso`.

    Arguments are those of sb3-contrib's ``RecurrentActorCriticPolicy``, with the same meaning,
    plus ``torso`` (a name in :data:`dream_rl.TORSOS`; default ``"lstm"``, as in ``MlpLstmPolicy``)
    and ``torso_kwargs`` (the torso's own options, on top of :data:`TORSO_RL_DEFAULTS`).
    ``features_extractor_class`` defaults to the class attribute ``default_features_extractor``
    (Flatten, NatureCNN or Combined).
    """

    default_features_extractor: type[BaseFeaturesExtractor] = FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        lstm_hidden_size: int = 256,
        n_lstm_layers: int = 1,
        shared_lstm: bool = False,
        enable_critic_lstm: bool = True,
        lstm_kwargs: dict[str, Any] | None = None,
        torso: str = "lstm",
        torso_kwargs: dict[str, Any] | None = None,
    ) -> None:
        # SB3's MlpLstmPolicy would truncate 2.5 or fail late on "8": refuse them before anything is built
        lstm_hidden_size = check_positive_int("lstm_hidden_size", lstm_hidden_size)
        n_lstm_layers = check_positive_int("n_lstm_layers", n_lstm_layers)
        for name, mapping in (("torso_kwargs", torso_kwargs), ("lstm_kwargs", lstm_kwargs)):
            if mapping is not None and not isinstance(mapping, dict):
                raise PolicyError(f"{name} must be a dict of the torso's options, got {type(mapping).__name__}")
        if not isinstance(torso, str) or torso not in TORSOS:
            close = difflib.get_close_matches(str(torso), TORSOS, n=1)
            raise DREAMError(
                f"unknown torso {torso!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; registered torsos: {', '.join(TORSOS)}"
            )
        if isinstance(observation_space, spaces.Dict) and features_extractor_class is None and not issubclass(
            self.default_features_extractor, CombinedExtractor
        ):
            name = type(self).__name__
            multi = "MultiInput" + name.removeprefix("Mlp").removeprefix("Cnn")
            raise DREAMError(
                f"{name} cannot take a Dict observation space: use {multi if multi in POLICIES else 'MultiInputTorsoPolicy'}"
                " (as SB3 asks for MultiInputPolicy), or pass a features_extractor_class that takes dicts"
            )
        self.torso_name = torso
        self.torso_kwargs = {**TORSO_RL_DEFAULTS.get(torso, {}), **(torso_kwargs or {})}
        # The stock __init__ builds nn.LSTMs (and fails on numpy-integer feature sizes), so the
        # recurrent part is built here and only ActorCriticPolicy's __init__ is reused.
        self.lstm_output_dim = int(lstm_hidden_size)  # read by _build_mlp_extractor
        ActorCriticPolicy.__init__(
            self,
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            ortho_init,
            use_sde,
            log_std_init,
            full_std,
            use_expln,
            squash_output,
            features_extractor_class or self.default_features_extractor,
            features_extractor_kwargs,
            share_features_extractor,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        self.lstm_hidden_size = int(lstm_hidden_size)
        self.n_lstm_layers = int(n_lstm_layers)
        self.lstm_kwargs = dict(lstm_kwargs or {})
        self.shared_lstm = shared_lstm
        self.enable_critic_lstm = enable_critic_lstm
        # same checks (and exception type) as the stock policy
        assert not (shared_lstm and enable_critic_lstm), (
            "You must choose between shared LSTM, seperate or no LSTM for the critic."
        )
        assert not (shared_lstm and not self.share_features_extractor), (
            "If the features extractor is not shared, the LSTM cannot be shared."
        )

        features_dim = int(self.features_dim)
        self.lstm_actor = PackedStateTorso(self.make_torso(features_dim))
        self.lstm_hidden_state_shape = (1, 1, self.lstm_actor.hidden_size)  # what predict(state=None) allocates
        self.critic = None
        self.lstm_critic = None
        if not (shared_lstm or enable_critic_lstm):
            # no critic memory: still map the features to the torso's output width
            self.critic = nn.Linear(features_dim, self.lstm_output_dim)
        if enable_critic_lstm:
            self.lstm_critic = PackedStateTorso(self.make_torso(features_dim))
        # The torso's name, saved with the parameters: a checkpoint of another torso is refused by name
        self.register_buffer("torso_tag", th.tensor(list(self.torso_name.encode()), dtype=th.uint8))
        # the optimizer built by ActorCriticPolicy does not know the torsos: rebuild it
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    # Every way in for an observation (forward: rollouts; get_distribution: predict; predict_values;
    # evaluate_actions: training) checks it first: a NaN/inf observation would otherwise end, steps
    # later, in the action distribution's "invalid values" error, which never mentions it.
    def forward(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        check_observation(obs)
        return super().forward(obs, *args, **kwargs)

    def get_distribution(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        check_observation(obs)
        return super().get_distribution(obs, *args, **kwargs)

    def predict_values(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        check_observation(obs)
        return super().predict_values(obs, *args, **kwargs)

    def evaluate_actions(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        check_observation(obs)
        return super().evaluate_actions(obs, *args, **kwargs)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """sb3-contrib's ``predict``; a ``state`` that is not the pair ``(h, c)`` it returned is a
        :class:`PolicyError` (its shapes and finiteness are checked against the observation in :meth:`_predict`)."""
        if state is not None:
            pair = isinstance(state, (tuple, list)) and len(state) == 2
            if not pair or not all(isinstance(part, (np.ndarray, th.Tensor)) for part in state):
                raise PolicyError(
                    f"predict expects state as the pair (h, c) of arrays the last predict returned, got "
                    f"{type(state).__name__}" + (f" of {len(state)}" if isinstance(state, (tuple, list)) else "")
                    + "; pass None to start from the initial state"
                )
        return super().predict(observation, state, episode_start, deterministic)

    def _predict(  # type: ignore[override]
        self,
        observation: th.Tensor | dict[str, th.Tensor],
        lstm_states: LstmStates,
        episode_starts: th.Tensor,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, tuple[th.Tensor, ...]]:
        self._check_predict_state(observation, lstm_states, episode_starts)
        return super()._predict(observation, lstm_states, episode_starts, deterministic)

    def _check_predict_state(
        self, observation: th.Tensor | dict[str, th.Tensor], lstm_states: LstmStates, episode_starts: th.Tensor
    ) -> None:
        """The state given to ``predict``: two arrays of shape (1, n_envs, hidden), finite wherever the
        episode goes on (an episode start resets the state by selection, so any values there are dropped)."""
        first = next(iter(observation.values())) if isinstance(observation, dict) else observation
        n_envs = first.shape[0]
        expected = (1, n_envs, self.lstm_actor.hidden_size)
        shapes = [tuple(part.shape) for part in lstm_states]
        if any(shape != expected for shape in shapes):
            raise PolicyError(
                f"predict got a state of shapes {shapes[0]} and {shapes[1]} for {n_envs} observation(s), expected "
                f"two arrays of shape {expected} (1, n_envs, hidden); pass the state the last predict returned for "
                "these envs, or None to start afresh"
            )
        going_on = episode_starts.reshape(-1) == 0  # (n_envs,)
        bad = th.zeros(n_envs, dtype=th.bool, device=going_on.device)
        for part in lstm_states:
            bad |= ~th.isfinite(part[0]).all(dim=1)
        bad &= going_on
        if bool(bad.any()):
            rows = bad.nonzero().flatten().tolist()
            raise PolicyError(
                f"predict got a non-finite state (NaN or inf) at env index {rows[0]}"
                + (f" (and {len(rows) - 1} more)" if len(rows) > 1 else "")
                + "; pass the state the last predict returned, or set episode_start=True there to start afresh"
            )

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, with a checkpoint of another torso (or other sizes) refused in one
        :class:`PolicyError` line naming both (RecurrentPPO's ``load`` and ``set_parameters`` come here)."""
        tag = state_dict.get("torso_tag")
        if isinstance(tag, th.Tensor):
            saved = bytes(tag.to(th.uint8).tolist()).decode(errors="replace")
            if saved != self.torso_name:
                raise PolicyError(
                    f"this checkpoint's memory is the {saved!r} torso, this policy's torso is {self.torso_name!r}; "
                    f"load it into a policy built with torso={saved!r} (RecurrentPPO.load builds one from the "
                    "saved policy_kwargs)"
                )
        elif tag is None:  # written before the tag existed (dream-rl 0.1): keys and shapes decide
            with_tag = OrderedDict(state_dict)
            if hasattr(state_dict, "_metadata"):
                with_tag._metadata = state_dict._metadata  # type: ignore[attr-defined]
            with_tag["torso_tag"] = self.torso_tag
            state_dict = with_tag
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as error:
            raise self._checkpoint_mismatch(state_dict, error) from None

    def _checkpoint_mismatch(self, state_dict: Any, error: RuntimeError) -> PolicyError:
        prefix = "lstm_actor.torso."
        theirs, ours = _torso_keys(state_dict, prefix), _torso_keys(self.state_dict(), prefix)
        saved = _identify_torso(state_dict, prefix) if theirs else None
        if theirs != ours or (saved is not None and saved != self.torso_name):
            saved_name = repr(saved) if saved else "another torso (or other torso options)"
            if any(key.startswith("lstm_actor.weight_") for key in state_dict):
                saved_name = "sb3-contrib's nn.LSTM (MlpLstmPolicy)"
            fix = f"torso={saved!r}" if saved else "the torso and torso_kwargs it was saved with"
            return PolicyError(
                f"this checkpoint's memory is {saved_name}, this policy's torso is {self.torso_name!r}; load it "
                f"into a policy built with {fix} (RecurrentPPO.load builds one from the saved policy_kwargs)"
            )
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        return PolicyError(
            f"this checkpoint does not fit this {self.torso_name!r} policy: "
            + (details[0] if details else str(error).strip())
            + " (it was saved with other sizes, torso options or another torso: lstm_hidden_size, n_lstm_layers, "
            "net_arch, torso_kwargs)"
        )

    def make_torso(self, input_size: int) -> RecurrentTorso:
        """One memory of width ``lstm_hidden_size`` over ``input_size`` features."""
        torso_class = TORSOS[self.torso_name]
        return torso_class(input_size, self.lstm_hidden_size, self.n_lstm_layers, **self.lstm_kwargs, **self.torso_kwargs)

    @property
    def torsos(self) -> list[RecurrentTorso]:
        """The actor's torso, and the critic's when it has one."""
        return [m.torso for m in (self.lstm_actor, self.lstm_critic) if m is not None]

    def _process_sequence(  # type: ignore[override]
        self,
        features: th.Tensor,
        lstm_states: LstmStates,
        episode_starts: th.Tensor,
        lstm: PackedStateTorso,
    ) -> tuple[th.Tensor, LstmStates]:
        """features (n_seq·T, F) in sequence-major order, as RecurrentPPO passes them.

        Inside a training sequence episodes start only at position 0 (the buffer splits
        sequences there), so each sequence runs in one torso call after one reset.
        """
        n_seq = lstm_states[0].shape[1]
        features = features.reshape(n_seq, -1, lstm.input_size).transpose(0, 1)  # (T, n_seq, F)
        episode_starts = episode_starts.reshape(n_seq, -1).transpose(0, 1)  # (T, n_seq)
        out, lstm_states = lstm(features, lstm_states, episode_starts)
        return out.transpose(0, 1).reshape(-1, out.shape[2]), lstm_states  # (n_seq·T, H)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            lstm_hidden_size=self.lstm_hidden_size,
            n_lstm_layers=self.n_lstm_layers,
            shared_lstm=self.shared_lstm,
            enable_critic_lstm=self.enable_critic_lstm,
            lstm_kwargs=self.lstm_kwargs,
            torso=self.torso_name,
            torso_kwargs=self.torso_kwargs,
        )
        return data


# DREAM settings the policies use unless dream_kwargs / torso_kwargs say otherwise.
# - time_step = 1, ltc_tau_sys = 2: one env step is one unit of time, the base time constant two
#   steps. With the reference dt = 0.1 and tau_sys = 10 a step writes only ~1% of a new input into h.
#   Measured with seed 0: RepeatFirst (20k steps) final return 0.50 (reference) vs 0.92 (dt = 1) vs
#   0.93 (dt = 1, tau_sys = 2); CartPoleNoVel in the setting of sb3-contrib's LSTM performance test,
#   eval return at 50k steps 366 (dt = 1) vs 500 (dt = 1, tau_sys = 2).
# - kappa = 1: homeostasis projects the fast weights onto ||U||_F <= target_norm. The prediction
#   reads U, so the Hebbian write acts on U like -dt*eta*S*h h^T U: once dt*eta*S*||h||^2 > 2 it
#   overshoots and grows, and kappa < 1 only halves the excess (seen: ||U|| ~ 1e17, then NaN, at
#   hidden size 256 and dt = 1). With kappa = 1 every state quantity stays bounded.
RL_DREAM_DEFAULTS: dict[str, Any] = {"time_step": 1.0, "ltc_tau_sys": 2.0, "kappa": 1.0}

# Per-torso options the policies apply unless torso_kwargs override them.
# - mamba: Mamba-2's Δ ~ logU(0.001, 0.1) and A ~ U(1, 16) suit token sequences thousands long; with them
#   a step writes about 1% of its input into the state, and the T-maze learning test (corridor 5) stayed at
#   chance (seeds 0-2 at 6144 steps, seed 0 at 12288). Taking one env step as about one unit of time,
#   Δ ~ logU(0.1, 1), with slower decay rates A ~ U(0.05, 1) (time constants of 1 to 200 steps), it
#   reaches 1.0 at 6144 steps on seeds 0-2.
TORSO_RL_DEFAULTS: dict[str, dict[str, Any]] = {
    "dream": RL_DREAM_DEFAULTS,
    "mamba": {"dt_min": 0.1, "dt_max": 1.0, "a_init_range": (0.05, 1.0)},
}


class MlpTorsoPolicy(RecurrentTorsoPolicy):
    """RecurrentPPO policy with any registered memory: ``policy_kwargs=dict(torso="ffm", torso_kwargs={...})``."""


class CnnTorsoPolicy(MlpTorsoPolicy):
    """Torso policy for image observations (NatureCNN features)."""

    default_features_extractor = NatureCNN


class MultiInputTorsoPolicy(MlpTorsoPolicy):
    """Torso policy for Dict observations."""

    default_features_extractor = CombinedExtractor


class _TorsoPreset(RecurrentTorsoPolicy):
    """A policy whose torso is fixed by the class (``preset_torso``); saved without ``torso``."""

    preset_torso = "lstm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._reject_torso_choice(kwargs)
        super().__init__(*args, torso=self.preset_torso, **kwargs)

    def _reject_torso_choice(self, kwargs: dict[str, Any]) -> None:
        for fixed in ("torso", "torso_kwargs"):
            if fixed in kwargs:
                raise DREAMError(
                    f"{type(self).__name__} fixes the torso to {self.preset_torso!r}: pass {fixed!r} to "
                    "MlpTorsoPolicy (or its Cnn/MultiInput forms) instead"
                )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        del data["torso"], data["torso_kwargs"]
        return data


class MlpDreamPolicy(_TorsoPreset):
    """RecurrentPPO policy with DREAM memory (drop-in for ``MlpLstmPolicy``).

    Extra argument ``dream_kwargs``: any :class:`~dream_rl.DREAMConfig` field except ``input_dim``
    (the features width) and ``hidden_dim`` (``lstm_hidden_size``), on top of
    :data:`RL_DREAM_DEFAULTS` (``time_step=1.0``: one env step is one unit of time;
    ``ltc_tau_sys=2.0``; ``kappa=1.0``: fast weights bounded by ``target_norm``); ``rank``
    defaults to ``min(16, lstm_hidden_size)``. ``lstm_kwargs`` accepts ``dropout`` (between stacked
    cells), as ``nn.LSTM`` does.
    """

    preset_torso = "dream"

    def __init__(self, *args: Any, dream_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._reject_torso_choice(kwargs)
        unknown = sorted(set(kwargs.get("lstm_kwargs") or {}) - {"dropout"})
        if unknown:
            raise DREAMError(
                f"lstm_kwargs {unknown} not supported by DREAM: only 'dropout' applies; "
                "DREAM's own settings go in dream_kwargs"
            )
        RecurrentTorsoPolicy.__init__(self, *args, torso="dream", torso_kwargs=dream_kwargs, **kwargs)

    @property
    def dream_kwargs(self) -> dict[str, Any]:
        """The DREAM options in use: :data:`RL_DREAM_DEFAULTS` updated by the given ``dream_kwargs``."""
        return self.torso_kwargs

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "dream_kwargs": self.dream_kwargs}


class MlpGruPolicy(_TorsoPreset):
    """RecurrentPPO policy with GRU memory. ``lstm_kwargs`` go to ``nn.GRU``."""

    preset_torso = "gru"


class MlpLstmTorsoPolicy(_TorsoPreset):
    """The LSTM through the same torso adapter as DREAM and GRU (one fused ``nn.LSTM`` call per
    training sequence), for comparisons where only the memory differs. ``lstm_kwargs`` go to
    ``nn.LSTM``. sb3-contrib's ``MlpLstmPolicy`` computes the same function."""

    preset_torso = "lstm"


class CnnDreamPolicy(MlpDreamPolicy):
    """DREAM policy for image observations (NatureCNN features)."""

    default_features_extractor = NatureCNN


class MultiInputDreamPolicy(MlpDreamPolicy):
    """DREAM policy for Dict observations."""

    default_features_extractor = CombinedExtractor


class CnnGruPolicy(MlpGruPolicy):
    """GRU policy for image observations (NatureCNN features)."""

    default_features_extractor = NatureCNN


class MultiInputGruPolicy(MlpGruPolicy):
    """GRU policy for Dict observations."""

    default_features_extractor = CombinedExtractor


class CnnLstmTorsoPolicy(MlpLstmTorsoPolicy):
    """Torso-adapter LSTM policy for image observations (NatureCNN features)."""

    default_features_extractor = NatureCNN


class MultiInputLstmTorsoPolicy(MlpLstmTorsoPolicy):
    """Torso-adapter LSTM policy for Dict observations."""

    default_features_extractor = CombinedExtractor


POLICIES: dict[str, type[RecurrentTorsoPolicy]] = {
    cls.__name__: cls
    for cls in (
        MlpTorsoPolicy, CnnTorsoPolicy, MultiInputTorsoPolicy,
        MlpDreamPolicy, CnnDreamPolicy, MultiInputDreamPolicy,
        MlpGruPolicy, CnnGruPolicy, MultiInputGruPolicy,
        MlpLstmTorsoPolicy, CnnLstmTorsoPolicy, MultiInputLstmTorsoPolicy,
    )
}

# SB3 resolves policy strings through the algorithm's `policy_aliases`: register ours, so that
# RecurrentPPO("MlpDreamPolicy", env) and saved models naming them work after `import dream_rl`.
RecurrentPPO.policy_aliases = {**RecurrentPPO.policy_aliases, **POLICIES}
