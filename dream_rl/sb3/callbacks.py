"""TensorBoard logging of the DREAM torso's internals through SB3's logger."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

from dream_rl.torsos import DreamTorso

__all__ = ["TorsoInternalsCallback"]


class TorsoInternalsCallback(BaseCallback):
    """Logs, once per rollout, the actor torso's mean surprise (``torso/surprise``), mean effective
    time constant (``torso/tau_eff``) and mean fast-weight norm ``‖U‖_F`` (``torso/fast_weight_norm``)
    over the rollout's steps. Does nothing for policies without a DREAM torso.

    Usage: ``model.learn(total_timesteps, callback=TorsoInternalsCallback())``.
    """

    def _on_training_start(self) -> None:
        torsos = getattr(self.model.policy, "torsos", [])
        self.torso = torsos[0] if torsos and isinstance(torsos[0], DreamTorso) else None
        if self.torso is not None:
            self.torso.monitor = True

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.torso is not None:
            for name, value in self.torso.pop_internals().items():
                self.logger.record(f"torso/{name}", value)

    def _on_training_end(self) -> None:
        if self.torso is not None:
            self.torso.monitor = False
