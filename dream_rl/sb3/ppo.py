"""SequencePPO: sb3-contrib's RecurrentPPO trained on whole env rollouts.

``SequencePPO`` takes the same arguments, policies and saved models as ``RecurrentPPO``; what differs
is how a rollout is collected and cut into minibatches:

* **Minibatches are whole env rollouts** (:class:`~dream_rl.sb3.buffers.SequenceRolloutBuffer`):
  ``n_steps`` steps of a subset of the envs, time-major, with the episode starts inside them and each
  env's recurrent state at the start of the rollout. A torso resets its state exactly where an
  episode starts, so nothing is split or padded (sb3-contrib's buffer splits every env's rollout at
  its episode starts and pads the pieces, in numpy, for every minibatch). ``batch_size`` still counts
  env steps; it is rounded to whole envs: ``max(1, round(batch_size / n_steps))`` envs a minibatch.
* **A leaner rollout** (:mod:`dream_rl.sb3.runners`): each torso's flat state stays one tensor, GRU
  and LSTM torsos step through fused ``torch`` cells, Discrete actions are sampled without a
  ``torch.distributions`` object, the time-limit bootstrap evaluates all truncated envs in one call.

The name says what changes (the training sequences), not a speed claim. The loss, the advantage
normalisation (per minibatch, as in SB3), the gradient clipping and the hyperparameter defaults are
RecurrentPPO's; over 8 seeds (CartPole without velocities, GRU 64, 8 envs x 128 steps, 4 minibatches,
4 epochs, 200k steps) the mean training return of every 25k steps and the final deterministic return
(20 episodes) are those of RecurrentPPO (23, 33, 62, 133, 167, 211, 205, 254 and 353 against 23, 33,
61, 134, 174, 200, 207, 237 and 330; seed to seed the final return spreads from 160 to 490). Adam runs
fused (``fused=True``: the same update without a Python loop over the parameter tensors) unless
``optimizer_kwargs`` choose ``fused`` or ``foreach``.

**Few updates with many envs, and ``grad_clip``.** RecurrentPPO clips one gradient norm over all
parameters (``grad_clip="joint"``, the default here too). The value loss's gradient dominates that
norm: on CartPole without velocities (returns in the tens to hundreds) its norm is 15-30 against the
actor's 0.02-0.3, so every step scales the actor's gradient by about 0.02, its per-parameter gradients
fall below Adam's ``eps`` (1e-5) and its steps shrink about tenfold. With 64 envs x 128 steps and 4
minibatches (25 updates in 200k steps) the GRU policy then stays at a random policy's return (22-28 on
seeds 0-2, RecurrentPPO and this class alike). ``grad_clip="separate"`` clips the critic's own
parameters (its memory, MLP and value head) apart from the rest, as Memorax clips its separate actor
and critic: 234-383 there (the actor-critic coupling, not the number of updates: without clipping
306-403, with Adam's ``eps=1e-8`` 300-355, with the advantages normalised over the whole rollout still
26-27). At 8 envs it learns faster early (a mean training return of 109 against 33 at 25-50k steps,
219 against 61 at 50-75k) but levels off near 230 (final deterministic return 271 against 330, 8
seeds), so it is an option, not the default.

With dream-rl's policies (:class:`RecurrentTorsoPolicy`) the fast runner is used; any other
``RecurrentActorCriticPolicy`` (sb3-contrib's ``MlpLstmPolicy``) goes through its own methods: exact,
as slow as before.

    from dream_rl.sb3 import SequencePPO
    model = SequencePPO("MlpGruPolicy", "dream_rl/CartPoleNoVel-v0", n_steps=128, batch_size=256)
    model.learn(200_000)
    model.save("gru")                    # RecurrentPPO.load("gru") reads it as well

sb3-contrib's ``RecurrentPPO`` is unchanged and keeps working with every policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import FloatSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from dream_rl.errors import PolicyError
from dream_rl.sb3.buffers import SequenceRolloutBuffer
from dream_rl.sb3.runners import PolicyRunner, make_runner

__all__ = ["GRAD_CLIPS", "SequencePPO", "critic_parameters"]

GRAD_CLIPS = ("joint", "separate")


def critic_parameters(policy: RecurrentActorCriticPolicy) -> list[th.nn.Parameter]:
    """The parameters only the value loss reaches: the critic's memory, its MLP, the value head and
    its own features extractor (when not shared)."""
    modules = [policy.value_net, policy.mlp_extractor.value_net, policy.lstm_critic, getattr(policy, "critic", None)]
    if not policy.share_features_extractor:
        modules.append(policy.vf_features_extractor)
    return [p for m in modules if m is not None for p in m.parameters()]


class SequencePPO(RecurrentPPO):
    """RecurrentPPO whose minibatches are whole env rollouts (see the module docstring).

    Arguments, defaults and policies are ``RecurrentPPO``'s, plus ``grad_clip``: ``"joint"``
    (default, RecurrentPPO's one norm over all parameters) or ``"separate"`` (the critic's gradients
    clipped to ``max_grad_norm`` apart from the rest: for many envs and few updates, see the module
    docstring). ``batch_size`` is in env steps and is rounded to
    whole env rollouts (``max(1, round(batch_size / n_steps))`` envs per minibatch; the last minibatch
    of an epoch takes the remaining envs when ``n_envs`` does not divide evenly).
    """

    # policy_aliases is not redefined: the lookup falls through to RecurrentPPO's, which gains dream-rl's
    # policy names when dream_rl.sb3.policies is imported (by dream_rl.sb3.runners, above).

    rollout_buffer: SequenceRolloutBuffer  # type: ignore[assignment]

    def __init__(self, *args: Any, grad_clip: str = "joint", **kwargs: Any) -> None:
        if grad_clip not in GRAD_CLIPS:
            raise PolicyError(f"grad_clip must be one of {GRAD_CLIPS}, got {grad_clip!r}")
        self.grad_clip = grad_clip
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        # RecurrentPPO._setup_model, with the whole-rollout buffer (it stores each env's state once a
        # rollout instead of once a step).
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        self.policy = self.policy.to(self.device)
        if not isinstance(self.policy, RecurrentActorCriticPolicy):
            raise PolicyError(
                f"SequencePPO needs a recurrent policy (a RecurrentActorCriticPolicy), got {type(self.policy).__name__}"
            )
        self._use_fused_adam()
        lstm = self.policy.lstm_actor
        shape = (lstm.num_layers, self.n_envs, lstm.hidden_size)
        self._last_lstm_states = RNNStates(
            (th.zeros(shape, device=self.device), th.zeros(shape, device=self.device)),
            (th.zeros(shape, device=self.device), th.zeros(shape, device=self.device)),
        )
        self.rollout_buffer = SequenceRolloutBuffer(
            self.n_steps, self.observation_space, self.action_space, self.n_envs, self.device,
            gamma=self.gamma, gae_lambda=self.gae_lambda,
        )  # fmt: skip
        self._runner: PolicyRunner | None = None
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            if isinstance(self.clip_range_vf, (float, int)) and self.clip_range_vf <= 0:
                raise PolicyError(f"clip_range_vf must be positive (None switches it off), got {self.clip_range_vf}")
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)

    def _use_fused_adam(self) -> None:
        """Adam as one fused kernel over all parameters (``fused=True``: the same update, without a
        Python loop over ~20 small tensors; a fifth of an update's time at 8 envs on CPU), unless
        ``optimizer_kwargs`` choose ``fused`` or ``foreach`` themselves."""
        policy = self.policy
        if policy.optimizer_class is not th.optim.Adam or {"fused", "foreach"} & set(policy.optimizer_kwargs):
            return
        if self.device.type not in ("cpu", "cuda") or any(not p.is_floating_point() for p in policy.parameters()):
            return
        policy.optimizer = th.optim.Adam(policy.parameters(), lr=self.lr_schedule(1), **policy.optimizer_kwargs, fused=True)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_runner"]

    @property
    def runner(self) -> PolicyRunner:
        """How the policy is computed in rollouts and updates (:mod:`dream_rl.sb3.runners`); rebuilt
        when ``self.policy`` has been replaced."""
        if getattr(self, "_runner", None) is None or self._runner.policy is not self.policy:
            self._runner = make_runner(self.policy)
        return self._runner

    # ------------------------------------------------------------------------------- rollouts

    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: SequenceRolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """Fill ``rollout_buffer`` with ``n_rollout_steps`` steps of every env (RecurrentPPO's
        semantics: the same callbacks, episode-start resets and time-limit bootstrap)."""
        if not isinstance(rollout_buffer, SequenceRolloutBuffer):
            raise PolicyError(f"SequencePPO fills a SequenceRolloutBuffer, got {type(rollout_buffer).__name__}")
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        runner = self.runner
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        rollout_buffer.start(self._last_lstm_states)
        runner.start_rollout()
        states = runner.to_states(self._last_lstm_states)
        box_actions = isinstance(self.action_space, spaces.Box)
        dones = self._last_episode_starts
        new_obs = self._last_obs
        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)
                starts = th.as_tensor(self._last_episode_starts, device=self.device).to(th.bool)
                actions, values, log_probs, next_states = runner.act(obs_tensor, starts, states)
            actions_np = actions.cpu().numpy()
            clipped = np.clip(actions_np, self.action_space.low, self.action_space.high) if box_actions else actions_np
            new_obs, rewards, dones, infos = env.step(clipped)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                self._last_lstm_states = runner.to_lstm_states(states)
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            self._bootstrap_truncated(rewards, dones, infos, next_states)
            rollout_buffer.add(self._last_obs, actions_np, rewards, self._last_episode_starts, values, log_probs)
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            states = next_states
        self._last_lstm_states = runner.to_lstm_states(states)
        with th.no_grad():
            starts = th.as_tensor(dones, device=self.device).to(th.bool)
            last_values = runner.values(obs_as_tensor(new_obs, self.device), starts, states)  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
        callback.on_rollout_end()
        return True

    def _bootstrap_truncated(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict], states: Any) -> None:
        """Add ``gamma * V(terminal observation)`` to the reward of every env whose episode was cut by
        a time limit (SB3 issue #633), all such envs in one critic call."""
        rows = [
            i for i in np.flatnonzero(dones)
            if infos[i].get("terminal_observation") is not None and infos[i].get("TimeLimit.truncated", False)
        ]  # fmt: skip
        if not rows:
            return
        terminal = [infos[i]["terminal_observation"] for i in rows]
        if isinstance(terminal[0], dict):
            obs: Any = {key: np.stack([t[key] for t in terminal]) for key in terminal[0]}
        else:
            obs = np.stack(terminal)
        with th.no_grad():
            obs_tensor = self.policy.obs_to_tensor(obs)[0]
            index = th.as_tensor(rows, device=self.device)
            starts = th.zeros(len(rows), dtype=th.bool, device=self.device)
            values = self.runner.values(obs_tensor, starts, states, rows=index)
        rewards[rows] += self.gamma * values.cpu().numpy().astype(rewards.dtype)

    # ------------------------------------------------------------------------------- training

    def _clip_groups(self) -> list[list[th.nn.Parameter]]:
        """The parameter groups whose gradient norms are clipped to ``max_grad_norm``: all of them
        together (``grad_clip="joint"``) or the critic's own apart from the rest (``"separate"``)."""
        params = list(self.policy.parameters())
        if getattr(self, "grad_clip", "joint") == "joint":
            return [params]
        critic_only = {id(p) for p in critic_parameters(self.policy)}
        return [[p for p in params if id(p) not in critic_only], [p for p in params if id(p) in critic_only]]

    def train(self) -> None:
        """One update: ``n_epochs`` passes over the rollout in minibatches of whole env rollouts; the
        loss is RecurrentPPO's (clipped surrogate, value loss, entropy, per-minibatch advantage
        normalisation), the gradient-norm clipping per ``grad_clip``."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        entropy_losses, pg_losses, value_losses, clip_fractions = [], [], [], []
        approx_kl_divs: list[float] = []
        continue_training = True
        loss = th.zeros(())
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for batch in self.rollout_buffer.get(self.batch_size):
                values, log_prob, entropy = self.runner.evaluate(batch)
                advantages = batch.advantages
                if self.normalize_advantage and advantages.numel() > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = th.exp(log_prob - batch.old_log_prob)
                policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = batch.old_values + th.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
                value_loss = ((batch.returns - values_pred) ** 2).mean()
                entropy_loss = -(-log_prob).mean() if entropy is None else -entropy.mean()
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                with th.no_grad():
                    log_ratio = log_prob - batch.old_log_prob
                    approx_kl_div = float(((th.exp(log_ratio) - 1) - log_ratio).mean())
                    clip_fractions.append(float((th.abs(ratio - 1) > clip_range).float().mean()))
                pg_losses.append(policy_loss.item())
                value_losses.append(value_loss.item())
                entropy_losses.append(entropy_loss.item())
                approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                for group in self._clip_groups():
                    th.nn.utils.clip_grad_norm_(group, self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        buffer = self.rollout_buffer
        explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
