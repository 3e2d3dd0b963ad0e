"""The code examples of the seed API reference (seed 000), run as printed apart from the import line
(``from dream import X`` → ``from dream_rl import X``), plus the overview's quick example (seed 001)
and the configuration guide's blocks (seed 002).

Where a seed line places tensors on ``device='cuda'`` and CUDA is absent, that one line runs with
``device='cpu'`` instead (commented at each place); everything else is verbatim. Each test re-creates
the context the seed's snippet assumes (the names defined by the snippets before it).
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from dream_rl import DREAM, DREAMCell, DREAMConfig, DREAMStack, DREAMState

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available on this machine")


# ---------------------------------------------------------------------------- DREAMConfig
def test_config_is_a_dataclass():
    # @dataclass class DREAMConfig: """Configuration for DREAM cell."""
    assert dataclasses.is_dataclass(DREAMConfig)


def test_config_example():
    from dream_rl import DREAMConfig

    config = DREAMConfig(
        input_dim=64,
        hidden_dim=256,
        rank=16,
        ltc_enabled=True,
        base_plasticity=0.15,
    )
    assert (config.input_dim, config.hidden_dim, config.rank) == (64, 256, 16)
    assert config.ltc_enabled is True and config.base_plasticity == 0.15


# ---------------------------------------------------------------------------- DREAMCell
def test_cell_init_example():
    from dream_rl import DREAMCell, DREAMConfig

    config = DREAMConfig(input_dim=64, hidden_dim=128)
    cell = DREAMCell(config)
    assert isinstance(cell, torch.nn.Module)
    assert cell.config is config


@needs_cuda
def test_cell_init_state_on_cuda():
    cell = DREAMCell(DREAMConfig(input_dim=64, hidden_dim=128))
    state = cell.init_state(batch_size=32, device='cuda')
    assert all(getattr(state, f.name).device.type == "cuda" for f in dataclasses.fields(state))


def test_cell_init_state_example():
    config = DREAMConfig(input_dim=64, hidden_dim=128)
    cell = DREAMCell(config)
    # seed: state = cell.init_state(batch_size=32, device='cuda') -- no CUDA here: the CPU instead
    # (the CUDA line itself runs in test_cell_init_state_on_cuda where CUDA exists)
    state = cell.init_state(batch_size=32, device='cpu')
    assert isinstance(state, DREAMState)
    assert state.h.shape == (32, 128)
    state = cell.init_state(32, None, torch.float32)  # the documented positional signature
    assert state.h.dtype == torch.float32


def test_cell_forward_example():
    config = DREAMConfig(input_dim=64, hidden_dim=128)
    cell = DREAMCell(config)
    state = cell.init_state(batch_size=32)

    x = torch.randn(32, 64)  # (batch, input)
    output, new_state = cell(x, state)

    assert output.shape == (32, 128)  # (batch, hidden_dim)
    assert isinstance(new_state, DREAMState)


def test_cell_forward_sequence_example():
    config = DREAMConfig(input_dim=64, hidden_dim=128)
    cell = DREAMCell(config)
    state = cell.init_state(batch_size=32)

    x_seq = torch.randn(32, 50, 64)  # (batch, time, input)
    output, final_state = cell.forward_sequence(x_seq, state)

    assert output.shape == (32, 50, 128)
    assert final_state.h.shape == (32, 128)
    last, _ = cell.forward_sequence(x_seq, state, return_all=False)
    assert last.shape == (32, 128)


# ---------------------------------------------------------------------------- DREAM
def test_dream_constructor_example():
    from dream_rl import DREAM

    model = DREAM(
        input_dim=64,
        hidden_dim=128,
        rank=8,
        ltc_enabled=True
    )
    config = model.get_config()
    assert (config.input_dim, config.hidden_dim, config.rank, config.ltc_enabled) == (64, 128, 8, True)


@needs_cuda
def test_dream_init_state_on_cuda():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8, ltc_enabled=True)
    state = model.init_state(batch_size=32, device='cuda')
    assert state.U.device.type == "cuda"


def test_dream_init_state_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8, ltc_enabled=True)
    # seed: state = model.init_state(batch_size=32, device='cuda') -- no CUDA here: the CPU instead
    state = model.init_state(batch_size=32, device='cpu')
    assert state.shape()["U"] == (32, 128, 8)


def test_dream_forward_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8, ltc_enabled=True)

    # Return all timesteps
    x = torch.randn(32, 50, 64)
    output, state = model(x, return_sequences=True)  # (32, 50, 128)
    assert output.shape == (32, 50, 128)

    # Return only final output
    output, state = model(x, return_sequences=False)  # (32, 128)
    assert output.shape == (32, 128)
    assert isinstance(state, DREAMState)


def test_dream_forward_with_mask_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8, ltc_enabled=True)

    x = torch.randn(32, 100, 64)  # padded
    # seed: lengths = torch.tensor([45, 67, 89, ...]) -- the "..." stands for the other 29 lengths
    # (a literal Ellipsis is not a valid tensor entry); they are filled in here
    lengths = torch.tensor([45, 67, 89] + [1 + (7 * k) % 100 for k in range(29)])  # actual lengths
    output, state = model.forward_with_mask(x, lengths)

    assert output.shape == (32, 100, 128)
    for i, length in enumerate(lengths.tolist()):
        assert torch.count_nonzero(output[i, length:]) == 0  # zeros for padded positions
        assert torch.equal(state.h[i], output[i, length - 1])  # the state after the last real step


def test_overview_quick_example(capsys):
    import torch

    from dream_rl import DREAM
    # Create model
    model = DREAM(
        input_dim=64,
        hidden_dim=128,
        rank=8,
        ltc_enabled=True
    )
    # Process sequence
    x = torch.randn(32, 50, 64)  # (batch, time, features)
    output, state = model(x)
    print(f"Output shape: {output.shape}")  # (32, 50, 128)
    assert capsys.readouterr().out == "Output shape: torch.Size([32, 50, 128])\n"


# ---------------------------------------------------------------------------- DREAMStack
def test_stack_example():
    from dream_rl import DREAMStack

    model = DREAMStack(
        input_dim=64,
        hidden_dims=[128, 128, 64],  # 3 layers
        rank=8,
        dropout=0.1
    )

    x = torch.randn(32, 50, 64)
    output, states = model(x)
    # output: (32, 50, 64) - final layer output
    # states: list of 3 DREAMState objects
    assert output.shape == (32, 50, 64)
    assert isinstance(states, list) and len(states) == 3
    assert all(isinstance(s, DREAMState) for s in states)


# ---------------------------------------------------------------------------- DREAMState
def test_state_dataclass_fields_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8)
    state = model.init_state(batch_size=32)
    assert dataclasses.is_dataclass(DREAMState)
    assert state.h.shape == (32, 128)  # (batch, hidden_dim) - Hidden state
    assert state.U.shape == (32, 128, 8)  # (batch, hidden_dim, rank) - Fast weights
    assert state.U_target.shape == (32, 128, 8)  # (batch, hidden_dim, rank) - Target weights
    assert state.adaptive_tau.shape == (32,)  # (batch,) - Habituated threshold
    assert state.error_mean.shape == (32, 64)  # (batch, input_dim) - Error EMA mean
    assert state.error_var.shape == (32, 64)  # (batch, input_dim) - Error EMA variance
    assert state.avg_surprise.shape == (32,)  # (batch,) - Surprise EMA


def test_state_detach_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8)
    x = torch.randn(4, 20, 64)
    state = None
    for chunk in x.split(10, dim=1):
        # Process chunk
        output, state = model(chunk, state)

        # Detach for truncated BPTT
        state = state.detach()

        output.sum().backward()  # each chunk's graph ends at the detached state
    assert not state.U.requires_grad


@needs_cuda
def test_state_to_cuda():
    state = DREAM(input_dim=64, hidden_dim=128, rank=8).init_state(batch_size=32)
    state = state.to('cuda')
    assert state.h.device.type == "cuda"


def test_state_to_example():
    state = DREAM(input_dim=64, hidden_dim=128, rank=8).init_state(batch_size=32)
    # seed: state = state.to('cuda') -- no CUDA here: the CPU instead
    state = state.to('cpu')
    assert state.h.device.type == "cpu"


def test_state_shape_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8)
    _, state = model(torch.randn(32, 3, 64))

    shapes = state.shape()
    # {'h': (32, 128), 'U': (32, 128, 8), ...}
    assert shapes["h"] == (32, 128) and shapes["U"] == (32, 128, 8)
    assert set(shapes) == {"h", "U", "U_target", "adaptive_tau", "error_mean", "error_var", "avg_surprise"}


def test_state_access_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8)
    _, state = model(torch.randn(32, 3, 64))

    # Hidden state
    hidden = state.h  # (batch, hidden_dim)

    # Fast weights
    fast_weights = state.U  # (batch, hidden_dim, rank)

    # Average surprise (adaptation metric)
    surprise = state.avg_surprise  # (batch,)

    # Error statistics
    error_mean = state.error_mean  # (batch, input_dim)
    error_var = state.error_var  # (batch, input_dim)

    assert hidden.shape == (32, 128) and fast_weights.shape == (32, 128, 8)
    assert surprise.shape == (32,) and error_mean.shape == (32, 64) and error_var.shape == (32, 64)


# ---------------------------------------------------------------------------- utilities
@pytest.mark.parametrize("build", [
    lambda: DREAM(input_dim=64, hidden_dim=128, rank=8),
    lambda: DREAMStack(input_dim=64, hidden_dims=[128, 128, 64], rank=8, dropout=0.1),
    lambda: DREAMCell(DREAMConfig(input_dim=64, hidden_dim=128)),
], ids=["DREAM", "DREAMStack", "DREAMCell"])
def test_reset_parameters_example(build):
    model = build()
    before = [p.detach().clone() for p in model.parameters()]

    model.apply(lambda m: m.reset_parameters() if hasattr(m, 'reset_parameters') else None)

    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # re-drawn
    assert all(torch.isfinite(p).all() for p in after)


def test_get_config_example():
    model = DREAM(input_dim=64, hidden_dim=128, rank=8)

    config = model.get_config()

    assert isinstance(config, DREAMConfig) and config.hidden_dim == 128


def test_type_aliases_example():
    from typing import Tuple  # noqa: UP035  (the seed's example, as written)

    import torch

    Tensor = torch.Tensor
    DREAMOutput = Tuple[Tensor, DREAMState]  # noqa: UP006

    from dream_rl import DREAMOutput as LibraryOutput

    assert typing.get_args(LibraryOutput) == typing.get_args(DREAMOutput) == (torch.Tensor, DREAMState)
    output = DREAM(input_dim=4, hidden_dim=8, rank=2)(torch.randn(2, 3, 4))
    assert isinstance(output, tuple) and isinstance(output[0], Tensor) and isinstance(output[1], DREAMState)


def test_dream_error_example(capsys):
    from dream_rl import DREAMError

    try:
        model = DREAM(input_dim=-1)  # Invalid dimension
    except DREAMError as e:
        print(f"DREAM error: {e}")

    out = capsys.readouterr().out
    assert out.startswith("DREAM error: ") and "input_dim" in out
    assert "model" not in locals()


# ---------------------------------------------------------------------------- configuration guide (seed 002)
def test_configuration_guide_blocks_are_valid():
    blocks = [
        dict(input_dim=39, hidden_dim=256, rank=16, ltc_tau_sys=10.0, base_threshold=0.5),  # ASR/speech
        dict(input_dim=64, hidden_dim=128, rank=8, base_plasticity=0.2, forgetting_rate=0.005,
             ltc_surprise_scale=20.0),  # fast adaptation
        dict(input_dim=64, hidden_dim=512, rank=32, ltc_tau_sys=20.0, forgetting_rate=0.001,
             target_norm=3.0),  # long-term memory
        dict(input_dim=64, hidden_dim=256, rank=16, time_step=0.05, ltc_tau_sys=15.0, target_norm=1.5,
             error_smoothing=0.05),  # stability
        dict(input_dim=39, hidden_dim=256, rank=16, ltc_enabled=True, ltc_tau_sys=10.0, base_plasticity=0.1,
             forgetting_rate=0.01),  # speech recognition
        dict(input_dim=10, hidden_dim=128, rank=8, ltc_enabled=True, ltc_tau_sys=15.0, base_plasticity=0.15,
             forgetting_rate=0.005),  # time series
        dict(input_dim=20, hidden_dim=128, rank=16, ltc_enabled=True, base_threshold=0.3,
             surprise_temperature=0.15, base_plasticity=0.2),  # anomaly detection
        dict(input_dim=300, hidden_dim=512, rank=32, ltc_enabled=True, ltc_tau_sys=20.0,
             forgetting_rate=0.001, target_norm=3.0),  # language modelling
        dict(input_dim=64, hidden_dim=256, rank=16, ltc_enabled=True, ltc_surprise_scale=20.0,
             base_plasticity=0.2, forgetting_rate=0.02, base_threshold=0.4),  # online learning
        dict(input_dim=64, hidden_dim=256, rank=16),  # tuning workflow, step 1
    ]
    for values in blocks:
        config = DREAMConfig(**values)
        for name, value in values.items():
            assert getattr(config, name) == value


def test_configuration_guide_monitoring_example(capsys):
    model = DREAM(input_dim=8, hidden_dim=16, rank=4)
    output, state = model(torch.randn(4, 10, 8))
    loss = output.square().mean()

    # During training
    print(f"Loss: {loss.item():.4f}")
    print(f"Surprise: {state.avg_surprise.mean().item():.4f}")
    print(f"U norm: {state.U.norm().item():.4f}")

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Loss", "Surprise", "U norm"]
