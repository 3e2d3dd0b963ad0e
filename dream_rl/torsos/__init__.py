"""Recurrent torsos: every memory behind one interface, one model a file, one registry.

``TORSOS`` maps the names used in policies and configs (``MlpTorsoPolicy(torso="gru")``,
``policy_kwargs: {torso: gru}``) to the torso classes. Each class takes
``(input_size, hidden_size, num_layers=1, **model_kwargs)`` and documents its state size.
"""

from __future__ import annotations

from dream_rl.torsos.base import RecurrentTorso, reset_where
from dream_rl.torsos.dnc import DncTorso
from dream_rl.torsos.dream import DreamTorso
from dream_rl.torsos.elman import ElmanTorso
from dream_rl.torsos.ffm import FfmTorso
from dream_rl.torsos.framestack import FramestackTorso
from dream_rl.torsos.fwp import FwpTorso
from dream_rl.torsos.gru import GruTorso
from dream_rl.torsos.indrnn import IndRnnTorso
from dream_rl.torsos.leworld import LeWorldTorso
from dream_rl.torsos.linear_attention import LinearAttentionTorso
from dream_rl.torsos.lmu import LmuTorso
from dream_rl.torsos.lru import LruTorso
from dream_rl.torsos.lstm import LstmTorso
from dream_rl.torsos.mamba import MambaTorso
from dream_rl.torsos.mingru import MinGruTorso
from dream_rl.torsos.mlp import MlpTorso
from dream_rl.torsos.mlstm import MlstmTorso
from dream_rl.torsos.positional_mlp import PositionalMlpTorso
from dream_rl.torsos.rtu import RtuTorso
from dream_rl.torsos.s4d import S4dTorso
from dream_rl.torsos.s5 import S5Torso
from dream_rl.torsos.self_attention import SelfAttentionTorso
from dream_rl.torsos.shm import ShmTorso
from dream_rl.torsos.slstm import SlstmTorso
from dream_rl.torsos.tcn import TcnTorso

__all__ = [
    "TORSOS", "RecurrentTorso", "DreamTorso", "GruTorso", "LstmTorso", "reset_where",
    "MinGruTorso", "LruTorso", "S5Torso", "MambaTorso", "FfmTorso",
    "MlstmTorso", "LinearAttentionTorso", "ShmTorso", "RtuTorso",
    "ElmanTorso", "SlstmTorso", "SelfAttentionTorso", "LeWorldTorso",
    "IndRnnTorso", "FwpTorso", "LmuTorso", "DncTorso", "S4dTorso",
    "MlpTorso", "PositionalMlpTorso", "FramestackTorso", "TcnTorso",
]

TORSOS: dict[str, type[RecurrentTorso]] = {
    "dream": DreamTorso,
    "lstm": LstmTorso,
    "gru": GruTorso,
    "mingru": MinGruTorso,
    "lru": LruTorso,
    "s5": S5Torso,
    "mamba": MambaTorso,
    "ffm": FfmTorso,
    "mlstm": MlstmTorso,
    "linear_attention": LinearAttentionTorso,
    "shm": ShmTorso,
    "rtu": RtuTorso,
    "elman": ElmanTorso,
    "slstm": SlstmTorso,
    "self_attention": SelfAttentionTorso,
    "leworld": LeWorldTorso,
    "indrnn": IndRnnTorso,
    "fwp": FwpTorso,
    "lmu": LmuTorso,
    "dnc": DncTorso,
    "s4d": S4dTorso,
    "mlp": MlpTorso,
    "positional_mlp": PositionalMlpTorso,
    "framestack": FramestackTorso,
    "tcn": TcnTorso,
}
