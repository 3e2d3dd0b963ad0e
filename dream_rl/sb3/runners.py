"""How :class:`~dream_rl.sb3.ppo.SequencePPO` runs a recurrent policy: one step of every env during a
rollout, and the whole rollout of a few envs during training.

Two runners compute the same functions as the policy's own ``forward`` and ``evaluate_actions``:

* :class:`TorsoRunner`, for :class:`~dream_rl.sb3.policies.RecurrentTorsoPolicy` (every dream-rl
  policy). It keeps each torso's flat state as one tensor during a rollout (no ``(h, c)`` packing per
  step), steps GRU and LSTM torsos with one fused ``torch`` cell call per layer, samples Discrete
  actions without building a ``torch.distributions`` object, and runs a training minibatch time-major
  through :func:`dream_rl.sb3.pieces.run_torso`, which keeps the episode starts inside the sequence.
* :class:`PolicyRunner`, for any other ``RecurrentActorCriticPolicy`` (sb3-contrib's
  ``MlpLstmPolicy``...): the policy's own methods, with the minibatch flattened env-major as they
  expect. Exact, not faster.

States cross the algorithm in RecurrentPPO's layout (``RNNStates``), so a model can switch between
``RecurrentPPO`` and ``SequencePPO`` (save/load) at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.torch_layers import MlpExtractor
from torch import Tensor, nn
from torch.nn import functional as F

from dream_rl.sb3.buffers import SequenceBatch
from dream_rl.sb3.pieces import EpisodeLayout, folds_resets, run_torso
from dream_rl.sb3.policies import PackedStateTorso, RecurrentTorsoPolicy, check_observation
from dream_rl.torsos import GruTorso, LstmTorso, RecurrentTorso

__all__ = ["PairedCellStep", "PolicyRunner", "TorsoRunner", "make_runner", "run_mlp", "step_torso"]

Observation = Tensor | dict[str, Tensor]

# ------------------------------------------------------------------------------------------ torsos


StepFn = Callable[[Any, Tensor, Tensor], tuple[Tensor, Tensor]]


def _layer_weights(rnn: nn.RNNBase) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
    """``(w_ih, w_hh, b_ih, b_hh)`` of every layer, from the module's flat weight list (reading the
    parameters by name goes through ``nn.Module.__getattr__``, a measurable cost per rollout step)."""
    weights = rnn._flat_weights
    per_layer = 4 if rnn.bias else 2
    layers = []
    for layer in range(rnn.num_layers):
        w = weights[layer * per_layer : (layer + 1) * per_layer]
        layers.append((w[0], w[1], w[2], w[3]) if rnn.bias else (w[0], w[1], None, None))
    return layers


def _gru_step(torso: GruTorso, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One step of ``nn.GRU`` (every layer) as ``torch.gru_cell`` calls: x (B, F), state (B, L·H)."""
    rnn = torso.rnn
    new = []
    for (w_ih, w_hh, b_ih, b_hh), h in zip(_layer_weights(rnn), state.split(rnn.hidden_size, dim=1)):
        x = th.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        new.append(x)
    return x, new[0] if len(new) == 1 else th.cat(new, dim=1)


def _lstm_step(torso: LstmTorso, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One step of ``nn.LSTM`` (every layer) as ``torch.lstm_cell`` calls: x (B, F), state (B, 2·L·H)."""
    rnn = torso.rnn
    L, H = rnn.num_layers, rnn.hidden_size
    hs, cs = state[:, : L * H].split(H, dim=1), state[:, L * H :].split(H, dim=1)
    new_h, new_c = [], []
    for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(_layer_weights(rnn)):
        h, c = th.lstm_cell(x, (hs[layer], cs[layer]), w_ih, w_hh, b_ih, b_hh)
        new_h.append(h)
        new_c.append(c)
        x = h
    return x, th.cat([*new_h, *new_c], dim=1)


# Torsos with a fused single-step path for rollouts (same function as their ``run`` at T = 1).
SINGLE_STEPS: dict[type, StepFn] = {GruTorso: _gru_step, LstmTorso: _lstm_step}


def step_torso(torso: RecurrentTorso, x: Tensor, state: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
    """One step of every env: x (B, F), state (B, P), starts (B,) bool → out (B, H), new state."""
    if folds_resets(torso):
        out, state = torso.run_with_resets(x.unsqueeze(0), state, starts.unsqueeze(0))
        return out[0], state
    state = state.masked_fill(starts.unsqueeze(1), 0.0)  # reset_where: selection, so NaN does not survive
    step = SINGLE_STEPS.get(type(torso))
    if step is not None and not th.is_grad_enabled():
        return step(torso, x, state)
    out, state = torso.run(x.unsqueeze(0), state)
    return out[0], state


_ACTIVATIONS: dict[type, Callable[[Tensor], Tensor]] = {nn.Tanh: th.tanh, nn.ReLU: th.relu, nn.Identity: lambda x: x}


def run_mlp(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)``; a ``Linear`` or an ``nn.Sequential`` of ``Linear`` layers and Tanh/ReLU (what
    SB3's ``MlpExtractor`` and heads are) runs as plain functional calls, without the per-module call overhead
    that is a tenth of a rollout step at these sizes."""
    if type(module) is nn.Linear:
        return F.linear(x, module.weight, module.bias)
    if type(module) is not nn.Sequential:
        return module(x)
    for layer in module:
        if type(layer) is nn.Linear:
            x = F.linear(x, layer.weight, layer.bias)
        elif type(layer) in _ACTIVATIONS:
            x = _ACTIVATIONS[type(layer)](x)
        else:
            x = layer(x)
    return x


class PairedCellStep:
    """The actor's and the critic's GRU or LSTM torsos and MLPs stepped together: two networks of the
    same shape as one batched computation (``baddbmm`` over weights stacked along a leading axis of
    2), so a rollout step costs one set of kernel launches instead of two. The same function as
    :func:`step_torso` and :func:`run_mlp` on each network (``nn.GRU``'s and ``nn.LSTM``'s gate
    equations). The stacked weights are a copy: :meth:`refresh` rebuilds them, at the start of every
    rollout (the parameters do not change during one; a fused optimizer step does not even bump their
    version counters).

    Applies to (:meth:`applies`): one-layer GRU or LSTM torsos with biases, of one type and equal
    sizes, a shared features extractor and SB3's ``MlpExtractor`` with the same layer sizes and
    activations on both sides.
    """

    def __init__(self, policy: RecurrentTorsoPolicy) -> None:
        self.policy = policy
        self.lstm = type(policy.lstm_actor.torso) is LstmTorso
        self.rnns = (policy.lstm_actor.torso.rnn, policy.lstm_critic.torso.rnn)
        self.nets = (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net)
        self.hidden = self.rnns[0].hidden_size
        self.refresh()

    @staticmethod
    def applies(policy: RecurrentTorsoPolicy) -> bool:
        torsos = (policy.lstm_actor.torso, getattr(policy.lstm_critic, "torso", None))
        if type(torsos[0]) not in (GruTorso, LstmTorso) or type(torsos[1]) is not type(torsos[0]):
            return False
        if not policy.share_features_extractor:
            return False
        rnns = [t.rnn for t in torsos]  # type: ignore[union-attr]
        if any(r.num_layers != 1 or not r.bias for r in rnns) or any(
            (r.input_size, r.hidden_size) != (rnns[0].input_size, rnns[0].hidden_size) for r in rnns
        ):
            return False
        mlp = policy.mlp_extractor
        if type(mlp) is not MlpExtractor:
            return False

        def layout(net: nn.Module) -> list[Any]:
            return [(type(m), tuple(m.weight.shape)) if type(m) is nn.Linear else type(m) for m in net]

        pi, vf = layout(mlp.policy_net), layout(mlp.value_net)
        return pi == vf and all(x if not isinstance(x, type) else x in _ACTIVATIONS for x in pi)

    def refresh(self) -> None:
        """Stack the current parameters of both networks."""
        with th.no_grad():
            weights = [_layer_weights(r)[0] for r in self.rnns]
            self.w_ih = th.stack([w[0].t() for w in weights])  # (2, F, G·H), G gates
            self.w_hh = th.stack([w[1].t() for w in weights])  # (2, H, G·H)
            self.b_ih = th.stack([w[2] for w in weights]).unsqueeze(1)  # (2, 1, G·H)
            self.b_hh = th.stack([w[3] for w in weights]).unsqueeze(1)
            self.layers: list[tuple[Tensor, Tensor] | Callable[[Tensor], Tensor]] = []
            for pi_layer, vf_layer in zip(*self.nets):
                if type(pi_layer) is nn.Linear:
                    self.layers.append((th.stack([pi_layer.weight.t(), vf_layer.weight.t()]),
                                        th.stack([pi_layer.bias, vf_layer.bias]).unsqueeze(1)))
                else:
                    self.layers.append(_ACTIVATIONS[type(pi_layer)])

    def step(self, x: Tensor, s_pi: Tensor, s_vf: Tensor, starts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (B, F) features, flat states (B, P) each, starts (B,) bool → the actor's and the critic's
        MLP outputs (B, ·) and their new flat states."""
        B, H = x.shape[0], self.hidden
        state = th.stack([s_pi, s_vf]).masked_fill(starts.view(1, B, 1), 0.0)  # (2, B, P), reset by selection
        h = state[..., :H]
        gi = th.baddbmm(self.b_ih, x.unsqueeze(0).expand(2, B, x.shape[1]), self.w_ih)
        gh = th.baddbmm(self.b_hh, h, self.w_hh)
        if self.lstm:  # gates i, f, g, o; flat state [h, c]
            gates = gi + gh
            sig = th.sigmoid(gates)  # i, f and o used (g's sigmoid is wasted: one op instead of three)
            c = th.addcmul(sig[..., H : 2 * H] * state[..., H:], sig[..., :H], th.tanh(gates[..., 2 * H : 3 * H]))
            h = sig[..., 3 * H :] * th.tanh(c)
            new_state = th.cat([h, c], dim=-1)
        else:  # gates r, z, n; flat state h
            rz = th.sigmoid(gi[..., : 2 * H] + gh[..., : 2 * H])
            n = th.tanh(th.addcmul(gi[..., 2 * H :], rz[..., :H], gh[..., 2 * H :]))
            h = new_state = th.lerp(n, h, rz[..., H:])  # (1 - z) n + z h
        y = h
        for layer in self.layers:
            y = th.baddbmm(layer[1], y, layer[0]) if isinstance(layer, tuple) else layer(y)
        return y[0], y[1], new_state[0], new_state[1]


# ------------------------------------------------------------------------------------------ states


def flat_from_lstm(states: tuple[Tensor, Tensor], state_size: int) -> Tensor:
    """RecurrentPPO's ``(h, c)`` (each (1, B, ceil(P/2))) → the flat state (B, P) they pack."""
    return th.cat([states[0][0], states[1][0]], dim=1)[:, :state_size]


def lstm_from_flat(flat: Tensor) -> tuple[Tensor, Tensor]:
    """The flat state (B, P) → ``(h, c)`` as :class:`PackedStateTorso` packs it."""
    if flat.shape[1] % 2:
        flat = F.pad(flat, (0, 1))
    h, c = flat.unsqueeze(0).chunk(2, dim=2)
    return h.contiguous(), c.contiguous()


# ------------------------------------------------------------------------------------------ runners


class PolicyRunner:
    """Any ``RecurrentActorCriticPolicy`` through its own methods; states are ``RNNStates``."""

    def __init__(self, policy: RecurrentActorCriticPolicy) -> None:
        self.policy = policy

    def start_rollout(self) -> None:
        """Called before a rollout's first step (the parameters are fixed until its end)."""

    def to_states(self, lstm_states: RNNStates) -> Any:
        """The runner's rollout state from RecurrentPPO's ``RNNStates``."""
        return lstm_states

    def to_lstm_states(self, states: Any) -> RNNStates:
        """RecurrentPPO's ``RNNStates`` from the runner's rollout state."""
        return states

    def act(self, obs: Observation, starts: Tensor, states: Any) -> tuple[Tensor, Tensor, Tensor, Any]:
        """One step of every env: obs (N, ...), starts (N,) bool → actions (N, ...), values (N,),
        log_probs (N,), new states."""
        actions, values, log_probs, states = self.policy(obs, states, starts.float())
        return actions, values.flatten(), log_probs, states

    def values(self, obs: Observation, starts: Tensor, states: Any, rows: Tensor | None = None) -> Tensor:
        """Values (n,) of ``obs`` for the envs ``rows`` (all if None), from their critic states."""
        vf = states.vf
        if rows is not None:
            vf = tuple(s.index_select(1, rows) for s in vf)
        return self.policy.predict_values(obs, vf, starts.float()).flatten()

    def evaluate(self, batch: SequenceBatch) -> tuple[Tensor, Tensor, Tensor | None]:
        """values, log-probs and entropies (T, B) of the minibatch's actions."""
        T, B = batch.episode_starts.shape

        def env_major(x: Tensor) -> Tensor:
            return x.transpose(0, 1).reshape(B * T, *x.shape[2:])

        obs = {k: env_major(v) for k, v in batch.observations.items()} if isinstance(batch.observations, dict) else (
            env_major(batch.observations)
        )
        values, log_prob, entropy = self.policy.evaluate_actions(
            obs, env_major(batch.actions), batch.lstm_states, env_major(batch.episode_starts).float()
        )

        def time_major(x: Tensor) -> Tensor:
            return x.reshape(B, T).transpose(0, 1)

        return time_major(values), time_major(log_prob), None if entropy is None else time_major(entropy)


class TorsoRunner(PolicyRunner):
    """A :class:`RecurrentTorsoPolicy` computed directly on its torsos; the rollout state is a pair
    of flat tensors ``(actor (N, P), critic (N, P))`` (the critic's is the actor's when the critic
    has no torso of its own)."""

    def __init__(self, policy: RecurrentTorsoPolicy) -> None:
        super().__init__(policy)
        self.torso_pi: RecurrentTorso = policy.lstm_actor.torso
        critic = policy.lstm_critic
        self.torso_vf: RecurrentTorso | None = critic.torso if isinstance(critic, PackedStateTorso) else None
        self.discrete = isinstance(policy.action_space, spaces.Discrete)
        self.paired = PairedCellStep(policy) if PairedCellStep.applies(policy) else None

    def start_rollout(self) -> None:
        if self.paired is not None:
            self.paired.refresh()

    def to_states(self, lstm_states: RNNStates) -> tuple[Tensor, Tensor]:
        pi = flat_from_lstm(lstm_states.pi, self.torso_pi.state_size)
        vf = flat_from_lstm(lstm_states.vf, self.torso_vf.state_size) if self.torso_vf is not None else pi
        return pi, vf

    def to_lstm_states(self, states: tuple[Tensor, Tensor]) -> RNNStates:
        pi = lstm_from_flat(states[0])
        return RNNStates(pi, lstm_from_flat(states[1]) if self.torso_vf is not None else pi)

    def _features(self, obs: Observation) -> tuple[Tensor, Tensor]:
        features = self.policy.extract_features(obs)
        return (features, features) if self.policy.share_features_extractor else features

    def _actor_mlp(self, x: Tensor) -> Tensor:
        mlp = self.policy.mlp_extractor
        return run_mlp(mlp.policy_net, x) if type(mlp) is MlpExtractor else mlp.forward_actor(x)

    def _critic_mlp(self, x: Tensor) -> Tensor:
        mlp = self.policy.mlp_extractor
        return run_mlp(mlp.value_net, x) if type(mlp) is MlpExtractor else mlp.forward_critic(x)

    def _critic_latent(self, vf_features: Tensor, out_pi: Tensor, out_vf: Tensor | None) -> Tensor:
        """The critic torso's output, or what the policy uses without one (as ``forward`` does)."""
        if out_vf is not None:
            return out_vf
        if self.policy.shared_lstm:
            return out_pi.detach()
        return self.policy.critic(vf_features)

    def act(self, obs: Observation, starts: Tensor, states: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor, Any]:
        policy = self.policy
        check_observation(obs)
        f_pi, f_vf = self._features(obs)
        if self.paired is not None:
            latent_pi, latent_vf, s_pi, s_vf = self.paired.step(f_pi, states[0], states[1], starts)
        else:
            out_pi, s_pi = step_torso(self.torso_pi, f_pi, states[0], starts)
            out_vf, s_vf = (None, s_pi) if self.torso_vf is None else step_torso(self.torso_vf, f_vf, states[1], starts)
            latent_pi = self._actor_mlp(out_pi)
            latent_vf = self._critic_mlp(self._critic_latent(f_vf, out_pi, out_vf))
        values = run_mlp(policy.value_net, latent_vf).flatten()
        if self.discrete:
            # torch.distributions.Categorical's sample and log_prob (the same numbers and random
            # draws) without building the object and checking its arguments every step
            logits = run_mlp(policy.action_net, latent_pi)
            log_p = logits - logits.logsumexp(dim=-1, keepdim=True)
            actions = th.multinomial(F.softmax(log_p, dim=-1), 1, True)
            log_prob = log_p.gather(1, actions).squeeze(1)
            return actions.squeeze(1), values, log_prob, (s_pi, s_vf)
        distribution = policy._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=False)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *policy.action_space.shape)), values, log_prob, (s_pi, s_vf)

    def values(self, obs: Observation, starts: Tensor, states: tuple[Tensor, Tensor], rows: Tensor | None = None) -> Tensor:
        policy = self.policy
        s_pi, s_vf = states if rows is None else (states[0].index_select(0, rows), states[1].index_select(0, rows))
        f_pi, f_vf = self._features(obs)
        if self.torso_vf is not None:
            out_vf, _ = step_torso(self.torso_vf, f_vf, s_vf, starts)
        elif policy.shared_lstm:
            out_vf, _ = step_torso(self.torso_pi, f_pi, s_pi, starts)
        else:
            out_vf = policy.critic(f_vf)
        return policy.value_net(policy.mlp_extractor.forward_critic(out_vf)).flatten()

    def evaluate(self, batch: SequenceBatch) -> tuple[Tensor, Tensor, Tensor | None]:
        policy = self.policy
        T, B = batch.episode_starts.shape
        obs = batch.observations
        flat_obs = {k: v.reshape(T * B, *v.shape[2:]) for k, v in obs.items()} if isinstance(obs, dict) else (
            obs.reshape(T * B, *obs.shape[2:])
        )
        f_pi, f_vf = self._features(flat_obs)
        s_pi, s_vf = self.to_states(batch.lstm_states)
        layout = EpisodeLayout.from_starts(batch.episode_starts, device=s_pi.device)  # shared by both torsos
        out_pi = run_torso(self.torso_pi, f_pi.reshape(T, B, -1), s_pi, layout).reshape(T * B, -1)
        out_vf = None if self.torso_vf is None else run_torso(self.torso_vf, f_vf.reshape(T, B, -1), s_vf, layout)
        latent_pi = policy.mlp_extractor.forward_actor(out_pi)
        critic_in = self._critic_latent(f_vf, out_pi, None if out_vf is None else out_vf.reshape(T * B, -1))
        values = policy.value_net(policy.mlp_extractor.forward_critic(critic_in)).reshape(T, B)
        if self.discrete:
            logits = policy.action_net(latent_pi)  # (T·B, n)
            log_p = logits - logits.logsumexp(dim=-1, keepdim=True)  # as Categorical normalises them
            log_prob = log_p.gather(1, batch.actions.reshape(T * B, 1)).reshape(T, B)
            entropy = -(F.softmax(log_p, dim=-1) * log_p).sum(dim=1).reshape(T, B)
            return values, log_prob, entropy
        distribution = policy._get_action_dist_from_latent(latent_pi)
        log_prob = distribution.log_prob(batch.actions.reshape(T * B, *batch.actions.shape[2:])).reshape(T, B)
        entropy = distribution.entropy()
        return values, log_prob, None if entropy is None else entropy.reshape(T, B)


def make_runner(policy: RecurrentActorCriticPolicy) -> PolicyRunner:
    """The fast runner for dream-rl's torso policies, the policy's own methods for any other."""
    return TorsoRunner(policy) if isinstance(policy, RecurrentTorsoPolicy) else PolicyRunner(policy)
