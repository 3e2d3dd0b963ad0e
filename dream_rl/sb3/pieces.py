"""Running a torso over whole env rollouts that have episode starts inside them.

A training minibatch of :class:`~dream_rl.sb3.ppo.SequencePPO` is ``T`` steps of ``B`` envs with
episodes starting anywhere. A torso handles that exactly (``torso(features, state, starts)``), but
the base class does it by cutting the time axis at every step where any env starts an episode: one
torso call per piece, and a random CartPole policy starts an episode somewhere almost every step at
16 envs. :func:`run_torso` picks the cheapest exact way instead:

* a torso that folds resets into its own computation (the scan and attention torsos) gets the
  sequence as it is;
* no start after step 0: one reset-free ``run``;
* starts at up to :data:`CUT_LIMIT` steps: the base class's cutting (a few calls of full width);
* more: :func:`run_as_pieces`, one padded batch of episode pieces (the layout sb3-contrib's buffer
  builds), run in a few phases so that the padding stays small.

The layout of the pieces (:class:`EpisodeLayout`) depends only on the episode starts, so it is
computed once per minibatch, in numpy, and shared by the actor's and the critic's torsos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch as th
from torch import Tensor

from dream_rl.torsos import RecurrentTorso, reset_where

__all__ = ["CALL_STEPS", "CUT_LIMIT", "EpisodeLayout", "folds_resets", "run_as_pieces", "run_torso"]

# Above this many steps with an episode start (after step 0) in a training sequence, run_torso packs
# the episode pieces into a padded batch instead of cutting the time axis at each of those steps.
CUT_LIMIT = 2

# The fixed cost of one torso call (forward and backward) in units of the cost of one (step, sequence)
# of work; measured at width 64 on one CPU thread (fused GRU, nn.LSTM, DREAM): about 200-300.
CALL_STEPS = 250

# Phase boundaries run_as_pieces chooses from (steps since a piece began).
_BOUNDARIES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def folds_resets(torso: RecurrentTorso) -> bool:
    """Whether the torso handles episode starts inside its own sequence computation (the scan and
    attention torsos override ``run_with_resets``) rather than by the base class's cutting."""
    return type(torso).run_with_resets is not RecurrentTorso.run_with_resets


@dataclass
class EpisodeLayout:
    """How ``T`` steps of ``B`` envs split into episode pieces.

    Attributes:
        starts: (T, B) bool tensor, True where a step begins an episode.
        n_cuts: the number of steps after step 0 where some env begins an episode.
        n_pieces: the number of pieces: each env's first step begins one, so does every start.
        first_columns: (B,) long tensor, the column of each env's first piece (columns are the
            pieces sorted by length, longest first).
        phases: ``(start, stop, running)``: run steps [start, stop) of the pieces in the first
            ``running`` columns.
        in_indices: per phase, ((stop - start) * running,) long: the row of the flattened (T·B + 1, F)
            features (the last row all zeros: padding) that each (step, column) of the phase reads.
        out_index: (T·B,) long: the row of the phases' outputs, concatenated and flattened, that is
            the output of each step (t, b).
    """

    starts: Tensor
    n_cuts: int
    n_pieces: int = 0
    first_columns: Tensor | None = None
    phases: tuple[tuple[int, int, int], ...] = ()
    in_indices: tuple[Tensor, ...] = ()
    out_index: Tensor | None = None

    @classmethod
    def from_starts(cls, starts: np.ndarray | Tensor, device: th.device | str = "cpu") -> EpisodeLayout:
        """The layout of (T, B) episode starts (bool or 0/1). The pieces are worked out only when the
        starts are too many to cut at (:data:`CUT_LIMIT`)."""
        starts_np = (starts.detach().cpu().numpy() if isinstance(starts, Tensor) else np.asarray(starts)) != 0
        starts_t = th.as_tensor(starts_np, device=device)
        T, B = starts_np.shape
        n_cuts = int(starts_np[1:].any(axis=1).sum())
        if n_cuts <= CUT_LIMIT:
            return cls(starts_t, n_cuts)
        begins = starts_np.copy()
        begins[0] = True  # every env's first step begins a piece
        piece_in_env = np.cumsum(begins, axis=0) - 1  # (T, B)
        counts = piece_in_env[-1] + 1  # (B,) pieces per env
        offsets = np.cumsum(counts) - counts  # (B,) each env's first piece
        piece = piece_in_env + offsets  # (T, B) piece index, env-major
        steps = np.arange(T)[:, None]
        position = steps - np.maximum.accumulate(np.where(begins, steps, 0), axis=0)
        n_pieces = int(counts.sum())
        lengths = np.bincount(piece.ravel(), minlength=n_pieces)
        order = np.argsort(-lengths, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(n_pieces)

        column = rank[piece]
        phases = _phases(lengths[order])
        # which step each (position, column) of the padded batch holds; T·B (the zero row) where none
        holder = np.full((phases[-1][1], n_pieces), T * B, dtype=np.int64)
        holder[position, column] = np.arange(T * B).reshape(T, B)
        in_indices, out_index, offset = [], np.empty((T, B), dtype=np.int64), 0
        for start, stop, running in phases:
            in_indices.append(holder[start:stop, :running].ravel())
            here = (position >= start) & (position < stop)
            out_index[here] = offset + (position[here] - start) * running + column[here]
            offset += (stop - start) * running

        def tensor(array: np.ndarray) -> Tensor:
            return th.as_tensor(np.ascontiguousarray(array, dtype=np.int64), device=device)

        return cls(
            starts_t, n_cuts, n_pieces, tensor(rank[offsets]), phases, tuple(tensor(i) for i in in_indices),
            tensor(out_index.ravel()),
        )  # fmt: skip


def _phases(lengths: np.ndarray) -> tuple[tuple[int, int, int], ...]:
    """Time ranges ``(start, stop, running)`` covering the longest of ``lengths`` (sorted, longest
    first) that minimise the estimated cost, :data:`CALL_STEPS` per torso call plus one per (step,
    running piece); boundaries from :data:`_BOUNDARIES` (an exact search over at most a dozen)."""
    longest = int(lengths[0])
    cuts = [0, *(b for b in _BOUNDARIES if b < longest), longest]
    ascending = lengths[::-1]
    running = [len(lengths) - int(np.searchsorted(ascending, c, side="right")) for c in cuts]  # pieces longer than c
    best: list[tuple[float, int]] = [(0.0, -1)]  # (cheapest cost to reach cuts[j], previous index)
    for j in range(1, len(cuts)):
        best.append(min((best[i][0] + CALL_STEPS + (cuts[j] - cuts[i]) * running[i], i) for i in range(j)))
    ranges, j = [], len(cuts) - 1
    while j > 0:
        i = best[j][1]
        ranges.append((cuts[i], cuts[j], running[i]))
        j = i
    return tuple(ranges[::-1])


def run_as_pieces(torso: RecurrentTorso, features: Tensor, state: Tensor, layout: EpisodeLayout) -> Tensor:
    """The outputs of ``torso(features, state, layout.starts)``, computed by reset-free ``run`` calls
    over episode pieces.

    The pieces are the columns of a padded batch, longest first, each starting at its step 0: the
    first piece of env b from ``state[b]`` (zeros if its step 0 starts an episode), every later piece
    from zeros. The batch runs in the layout's phases over the time axis, each carrying on the state
    of only the pieces still running (the leading columns), so the work stays close to the number of
    real steps. Steps past a piece's end inside a phase are padding (zero features): a torso is
    causal, so they do not change the piece's outputs. Only the phases' rows are ever built: each
    phase gathers its inputs from the flattened features, and one gather puts the outputs back.

    Args:
        features: (T, B, F); state: (B, P); layout: from the same (T, B) episode starts.
    Returns:
        out (T, B, H). (No final state: padded steps run past some pieces' ends.)
    """
    assert layout.first_columns is not None and layout.out_index is not None
    T, B, width = features.shape
    rows = th.cat([features.reshape(T * B, width), features.new_zeros(1, width)])  # the last row: padding
    h = state.new_zeros(layout.n_pieces, state.shape[1]).index_put(
        (layout.first_columns,), reset_where(state, layout.starts[0])
    )
    outputs = []
    for (start, stop, running), index in zip(layout.phases, layout.in_indices):
        out, h = torso.run(rows.index_select(0, index).view(stop - start, running, width), h[:running])
        outputs.append(out.reshape((stop - start) * running, -1))
    return th.cat(outputs).index_select(0, layout.out_index).view(T, B, -1)


def run_torso(torso: RecurrentTorso, features: Tensor, state: Tensor, layout: EpisodeLayout) -> Tensor:
    """``torso(features, state, layout.starts)[0]``, the cheapest exact way (see the module docstring).

    Args:
        features: (T, B, F); state: (B, P), the state before step 0; layout: of the (T, B) starts.
    Returns:
        out (T, B, H).
    """
    starts = layout.starts
    if folds_resets(torso):
        return torso.run_with_resets(features, state, starts)[0]
    if layout.n_cuts == 0:
        return torso.run(features, reset_where(state, starts[0]))[0]
    if layout.n_pieces == 0:  # few cuts: the base class's cutting
        return torso.run_with_resets(features, state, starts)[0]
    return run_as_pieces(torso, features, state, layout)
