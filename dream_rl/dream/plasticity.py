"""Frozen plasticity: run a trained DREAM memory with its fast weights not written (``η = 0``).

The seeds claim that DREAM adapts *during inference*: within an episode, surprising inputs are
written into the fast weights ``U`` and read back by later steps. :func:`frozen_plasticity` tests
that claim on a trained model without retraining it: inside the ``with`` block every
:class:`~dream_rl.dream.cell.DREAMCell` of the model runs with ``fast_weights=False`` (the Hebbian
write is off; see :class:`~dream_rl.DREAMConfig`), and on leaving the block each cell gets back the
exact configuration it had, even when the block raises. Nothing else changes: the learned weights,
the other switches, the kernels (the ablation runs on the fast kernels too).

From the state an episode starts in (``U = U_target = 0``) the fast weights then stay 0 for the whole
episode, so the policy acts with everything but the fast weights: if adaptation during inference is
real, freezing it costs return. ``scripts/frozen_plasticity.py`` measures that on trained runs.

Example::

    model = RecurrentPPO.load("final_model.zip")
    with frozen_plasticity(model):
        returns, _ = evaluate_policy(model, env, n_eval_episodes=100, return_episode_rewards=True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from dream_rl.dream.cell import DREAMCell
from dream_rl.errors import DREAMError

__all__ = ["dream_cells", "frozen_plasticity"]


def dream_cells(model: Any) -> list[DREAMCell]:
    """Every :class:`DREAMCell` inside ``model``: an ``nn.Module`` (a torso, a policy, a
    :class:`~dream_rl.DREAM` layer) or an SB3 model holding one as ``model.policy``."""
    module = model if isinstance(model, nn.Module) else getattr(model, "policy", None)
    if not isinstance(module, nn.Module):
        raise DREAMError(
            f"frozen_plasticity needs a torch module or an SB3 model with a .policy module, got {type(model).__name__}"
        )
    return [m for m in module.modules() if isinstance(m, DREAMCell)]


@contextmanager
def frozen_plasticity(model: Any) -> Iterator[list[DREAMCell]]:
    """Within the block, the DREAM cells of ``model`` do not write their fast weights (``η = 0``).

    Yields the cells. Raises :class:`DREAMError` when ``model`` holds no DREAM cell (freezing the
    plasticity of another memory would silently measure nothing). Not re-entrant across threads: it
    sets each cell's ``config`` for the duration of the block.
    """
    cells = dream_cells(model)
    if not cells:
        raise DREAMError(
            f"{type(model).__name__} holds no DREAM cell: frozen plasticity applies to DREAM memories only "
            "(torso='dream', MlpDreamPolicy, DREAM, DREAMCell)"
        )
    saved = [cell.config for cell in cells]
    try:
        for cell, config in zip(cells, saved):
            cell.config = dataclasses.replace(config, fast_weights=False)
        yield cells
    finally:
        for cell, config in zip(cells, saved):
            cell.config = config
