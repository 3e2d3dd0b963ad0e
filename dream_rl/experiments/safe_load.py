"""Load a saved RecurrentPPO model (``final_model.zip``, a checkpoint, ``evaluate --model``) without
unpickling anything from the file.

A Stable-Baselines3 ``.zip`` holds the network weights as ``.pth`` files, which SB3 reads with
``torch.load(..., weights_only=True)`` (tensors only), and the model's attributes as JSON in
``data``. A few attributes that JSON cannot hold (the policy class, the policy kwargs, the
observation and action spaces, the learning-rate and clip-range schedules; in a checkpoint taken
during training also the last observations and the recent episode statistics) are stored as
base64-encoded cloudpickle, and SB3's ``load`` unpickles them: a crafted file could run any code at
that point. ``load`` takes ``custom_objects``, values that replace those entries *instead of*
unpickling them; this module passes one for every entry, rebuilt from the run's own config (itself
checked as data: registered names only) and from the env built from its registered id, or reset
(the last observations: ``learn`` resets the envs; the episode statistics: ``learn`` starts them
anew, so ``rollout/ep_rew_mean`` after a resume averages the episodes since). A file that holds a
pickled entry outside that list is refused.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from sb3_contrib import RecurrentPPO
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["REPLACED_ENTRIES", "pickled_entries", "load_recurrent_ppo"]

# The entries of a RecurrentPPO .zip that SB3 stores pickled, all of them rebuilt by load_recurrent_ppo.
REPLACED_ENTRIES = (
    "policy_class", "policy_kwargs", "observation_space", "action_space",
    "learning_rate", "lr_schedule", "clip_range", "clip_range_vf",
    "_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer",
)


def pickled_entries(path: Path) -> list[str]:
    """The names of the entries of ``path``'s ``data`` that are stored pickled (read as JSON only).

    Raises ``ValueError`` for a file that is not a zip with a JSON ``data`` member."""
    if not zipfile.is_zipfile(path):
        raise ValueError("not a zip file")
    with zipfile.ZipFile(path) as archive:
        if "data" not in archive.namelist():
            raise ValueError("no 'data' entry: not a model saved by Stable-Baselines3")
        data = json.loads(archive.read("data").decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("its 'data' entry is not a JSON object")
    return [key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value]


def load_recurrent_ppo(
    path: Path,
    env: VecEnv,
    device: str,
    policy_class: type,
    policy_kwargs: dict[str, Any],
    algo: dict[str, Any],
) -> RecurrentPPO:
    """``RecurrentPPO.load(path, env)`` with every pickled entry replaced (see the module doc):
    ``policy_class`` and ``policy_kwargs`` as the run's config builds them, the spaces of ``env``,
    and the schedules from ``algo`` (the run's RecurrentPPO arguments).

    Raises ``ValueError`` for a file that holds a pickled entry dream-rl does not rebuild, and
    whatever SB3 raises for a file that is not a model of this policy and env."""
    unknown = sorted(set(pickled_entries(path)) - set(REPLACED_ENTRIES))
    if unknown:
        raise ValueError(
            f"it holds pickled entries that dream-rl does not unpickle ({', '.join(unknown)}): "
            "unpickling a file can run any code"
        )
    learning_rate = algo.get("learning_rate", 3e-4)
    custom_objects = {
        "policy_class": policy_class,
        "policy_kwargs": dict(policy_kwargs),
        "observation_space": env.observation_space,
        "action_space": env.action_space,
        "learning_rate": learning_rate,
        "lr_schedule": FloatSchedule(learning_rate),  # rebuilt from learning_rate by load() anyway
        "clip_range": algo.get("clip_range", 0.2),  # turned into a schedule by load()
        "clip_range_vf": algo.get("clip_range_vf"),
        # rebuilt by learn(): it resets the envs when _last_obs is None, and starts new statistics buffers
        "_last_obs": None,
        "_last_episode_starts": None,
        "_last_original_obs": None,
        "ep_info_buffer": None,
        "ep_success_buffer": None,
    }
    return RecurrentPPO.load(path, env=env, device=device, custom_objects=custom_objects)
