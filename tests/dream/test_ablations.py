"""DREAMConfig's ablation switches (fast_weights, surprise_gating, error_injection; ltc_enabled and
sleep_rate=0 need no switch) and frozen plasticity (dream_rl.dream.plasticity).

Each switch: its default is the seed's cell, bit for bit; switched off, it removes exactly its term
(the outputs no longer depend on what it removed) and both fast kernels (the C++ one where it builds,
the pure-PyTorch one always) equal the reference step in values and gradients (float64).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dream_rl.dream.cell import DREAMCell
from dream_rl.dream.config import DREAMConfig
from dream_rl.dream.kernels import dispatch
from dream_rl.dream.plasticity import dream_cells, frozen_plasticity
from dream_rl.dream.state import DREAMState
from dream_rl.errors import DREAMError

NATIVE = dispatch.native_available()
BACKENDS = ["torch", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no C++ kernel here"))]
F64 = torch.float64
SWITCHES = ("fast_weights", "surprise_gating", "error_injection")


def make_cell(dtype=F64, seed=0, **overrides) -> DREAMCell:
    torch.manual_seed(seed)
    return DREAMCell(DREAMConfig(**{"input_dim": 5, "hidden_dim": 12, "rank": 3, **overrides})).to(dtype)


def random_state(cell: DREAMCell, B: int, dtype=F64, seed=1) -> DREAMState:
    """Every field away from its initial value (nonzero U and U_target included)."""
    g = torch.Generator().manual_seed(seed)
    H, r, I = cell.config.hidden_dim, cell.config.rank, cell.config.input_dim

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return DREAMState(rnd(B, H).tanh(), 0.3 * rnd(B, H, r), 0.3 * rnd(B, H, r),
                      0.4 + 0.2 * torch.rand(B, generator=g, dtype=dtype), 0.2 * rnd(B, I),
                      0.3 + torch.rand(B, I, generator=g, dtype=dtype), 0.5 * torch.rand(B, generator=g, dtype=dtype))


def fields_of(state: DREAMState) -> list[torch.Tensor]:
    return [getattr(state, f.name) for f in dataclasses.fields(state)]


def run(cell: DREAMCell, x: torch.Tensor, state: DREAMState, backend: str) -> dict:
    """Outputs, final state and the gradients of a fixed random linear loss (None where none flows)."""
    cell.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    state = DREAMState(*(t.detach().clone().requires_grad_(True) for t in fields_of(state)))
    if backend == "reference":
        out, final = cell.reference_run_time_major(x, state)
    else:
        out, final = dispatch.run_sequence(cell, x, state, backend)
    g = torch.Generator().manual_seed(123)
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=F64).to(t.dtype)).sum() for t in [out, *fields_of(final)])
    loss.backward()
    result = {"out": out.detach(), **{f"final.{i}": t.detach() for i, t in enumerate(fields_of(final))}}
    result["grad.x"] = x.grad
    result.update({f"grad.state.{i}": t.grad for i, t in enumerate(fields_of(state))})
    result.update({f"grad.{name}": p.grad for name, p in cell.named_parameters()})
    return result


def assert_close(ref: dict, got: dict, rtol: float = 1e-9, atol: float = 1e-11) -> None:
    assert ref.keys() == got.keys()
    for key in ref:
        assert (ref[key] is None) == (got[key] is None), f"{key}: one gradient is None, the other is not"
        if ref[key] is not None:
            assert torch.allclose(ref[key], got[key], rtol=rtol, atol=atol), (
                f"{key}: max |diff| = {(ref[key] - got[key]).abs().max().item():.3g}")


def assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] is None) == (b[key] is None), key
        assert a[key] is None or torch.equal(a[key], b[key]), key


def inputs(cell: DREAMCell, T: int = 12, B: int = 3, seed: int = 7) -> torch.Tensor:
    return 1.5 * torch.randn(T, B, cell.config.input_dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---------------------------------------------------------------------------- defaults
def test_switches_default_to_the_seed_cell_and_reject_non_bools():
    config = DREAMConfig()
    assert (config.fast_weights, config.surprise_gating, config.error_injection) == (True, True, True)
    for name in SWITCHES:
        for bad in ("false", 0, 1, None):
            with pytest.raises(DREAMError, match=name):
                DREAMConfig(**{name: bad})


@pytest.mark.parametrize("backend", ["reference", "torch", *BACKENDS[1:]])
def test_explicit_defaults_give_bitwise_the_default_cell(backend):
    """Spelling every ablation switch out at its default changes nothing, on every backend."""
    explicit = dict(fast_weights=True, surprise_gating=True, error_injection=True, ltc_enabled=True,
                    sleep_rate=DREAMConfig().sleep_rate, ltc_tau_spread=1.0)
    default, spelled = make_cell(), make_cell(**explicit)
    assert default.config == spelled.config
    x, state = inputs(default), random_state(default, 3)
    assert_equal(run(default, x, state, backend), run(spelled, x, state, backend))


# ---------------------------------------------------------------------------- kernels equal the reference
CASES = {
    "no_fast_weights": dict(fast_weights=False),
    "no_surprise_gating": dict(surprise_gating=False),
    "no_error_injection": dict(error_injection=False),
    "no_sleep": dict(sleep_rate=0.0, min_surprise_for_sleep=1.0),  # the mask is on: only ζ = 0 stops it
    "no_ltc": dict(ltc_enabled=False),
    "no_gating_no_ltc": dict(surprise_gating=False, ltc_enabled=False),
    "all_off": dict(fast_weights=False, surprise_gating=False, error_injection=False, ltc_enabled=False,
                    sleep_rate=0.0),
    "no_gating_norm_binds": dict(surprise_gating=False, kappa=1.0, target_norm=0.05, base_plasticity=2.0),
    "tau_spread": dict(ltc_tau_spread=8.0),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("start", ["initial", "random"])
@pytest.mark.parametrize("case", list(CASES))
def test_ablation_kernels_match_the_reference_float64(case, start, backend, monkeypatch):
    cell = make_cell(**CASES[case])
    x = inputs(cell)
    state = cell.init_state(3) if start == "initial" else random_state(cell, 3)
    ref = run(cell, x, state, "reference")

    def no_fallback(*args):
        raise AssertionError("the kernel fell back to the reference loop")

    monkeypatch.setattr(cell, "reference_run_time_major", no_fallback)
    assert_close(ref, run(cell, x, state, backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ablations_in_float32_stay_near_the_float64_reference(backend):
    cell64 = make_cell(input_dim=8, hidden_dim=16, rank=8, **CASES["all_off"])
    cell32 = make_cell(dtype=torch.float32, input_dim=8, hidden_dim=16, rank=8, **CASES["all_off"])
    cell32.load_state_dict({k: v.float() for k, v in cell64.state_dict().items()})
    x, state = inputs(cell64, T=25), random_state(cell64, 3)
    ref = run(cell64, x, state, "reference")
    got = run(cell32, x.float(), DREAMState(*(t.float() for t in fields_of(state))), backend)
    for key, value in ref.items():
        assert (value is None) == (got[key] is None), key
        if value is not None:
            assert (got[key].double() - value).abs().max().item() <= 1e-4 * (value.abs().max().item() + 1e-6), key


# ---------------------------------------------------------------------------- each switch removes its term
def perturbed(cell: DREAMCell, **params: float) -> DREAMCell:
    """A copy of ``cell`` with the named parameters redrawn at random (scaled)."""
    other = make_cell(**dataclasses.asdict(cell.config))
    other.load_state_dict(cell.state_dict())
    with torch.no_grad():
        for name, scale in params.items():
            getattr(other, name).copy_(scale * torch.randn_like(getattr(other, name)))
    return other


@pytest.mark.parametrize("backend", ["reference", "torch", *BACKENDS[1:]])
def test_without_fast_weights_U_stays_zero_and_eta_is_unused(backend):
    cell = make_cell(fast_weights=False, min_surprise_for_sleep=1.0, sleep_rate=0.5)
    x = inputs(cell, T=30)
    result = run(cell, x, cell.init_state(3), backend)
    assert result["final.1"].abs().max() == 0 and result["final.2"].abs().max() == 0  # U, U_target
    assert result["grad.plasticity"] is None
    assert_equal({"out": result["out"]}, {"out": run(perturbed(cell, plasticity=3.0), x, cell.init_state(3), backend)["out"]})
    # with the write on, the same cell does write U
    on = run(make_cell(min_surprise_for_sleep=1.0, sleep_rate=0.5), x, cell.init_state(3), backend)
    assert on["final.1"].abs().max() > 0


def test_zero_base_plasticity_is_not_an_ablation():
    """base_plasticity=0 only initialises η at 0: its gradient is nonzero, so training moves it and
    the fast weights come back. fast_weights=False is the ablation."""
    cell = make_cell(base_plasticity=0.0)
    result = run(cell, inputs(cell), random_state(cell, 3), "reference")
    assert result["grad.plasticity"].abs().max() > 0


@pytest.mark.parametrize("backend", ["reference", "torch", *BACKENDS[1:]])
def test_without_surprise_gating_S_is_one_and_the_threshold_settings_do_not_matter(backend):
    cell = make_cell(surprise_gating=False)
    x = inputs(cell)
    with torch.no_grad():
        _, _, internals = cell.forward_sequence_with_internals(x.transpose(0, 1), cell.init_state(3))
    assert torch.equal(internals.surprise, torch.ones_like(internals.surprise))
    base = run(cell, x, random_state(cell, 3), backend)
    other = make_cell(surprise_gating=False, surprise_temperature=0.01, entropy_influence=3.0)
    assert_equal(base, run(other, x, random_state(cell, 3), backend))
    assert not torch.equal(base["out"], run(make_cell(), x, random_state(cell, 3), backend)["out"])


@pytest.mark.parametrize("backend", ["reference", "torch", *BACKENDS[1:]])
def test_without_error_injection_W_is_unused(backend):
    cell = make_cell(error_injection=False)
    x, state = inputs(cell), random_state(cell, 3)
    result = run(cell, x, state, backend)
    assert result["grad.weight_err"] is None
    assert torch.equal(result["out"], run(perturbed(cell, weight_err=3.0), x, state, backend)["out"])
    assert not torch.equal(result["out"], run(make_cell(), x, state, backend)["out"])


@pytest.mark.parametrize("backend", ["reference", "torch", *BACKENDS[1:]])
def test_zero_sleep_rate_never_moves_U_target(backend):
    cell = make_cell(sleep_rate=0.0, min_surprise_for_sleep=1.0)  # asleep at every step
    state = random_state(cell, 3)
    result = run(cell, inputs(cell, T=30), state, backend)
    assert torch.equal(result["final.2"], state.U_target)
    awake = run(make_cell(sleep_rate=0.3, min_surprise_for_sleep=1.0), inputs(cell, T=30), state, backend)
    assert not torch.equal(awake["final.2"], state.U_target)


# ---------------------------------------------------------------------------- through the RL stack
def test_dream_kwargs_take_the_switches():
    from dream_rl.torsos import DreamTorso

    torso = DreamTorso(4, 8, num_layers=2, fast_weights=False, surprise_gating=False, error_injection=False)
    assert all(not (c.config.fast_weights or c.config.surprise_gating or c.config.error_injection)
               for c in torso.cells)
    with pytest.raises(DREAMError, match="fast_weights"):
        DreamTorso(4, 8, fast_weight=False)


def test_mlp_dream_policy_and_experiment_config_accept_the_switches():
    gym = pytest.importorskip("gymnasium")
    from dream_rl.sb3.policies import MlpDreamPolicy

    policy = MlpDreamPolicy(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), lambda _: 1e-3,
                            lstm_hidden_size=8, dream_kwargs={"surprise_gating": False, "fast_weights": False})
    configs = [c.config for c in dream_cells(policy)]
    assert configs and all(not c.surprise_gating and not c.fast_weights and c.error_injection for c in configs)
    from dream_rl.experiments.config import ConfigError, load_config

    root = Path(__file__).resolve().parents[2]
    ablations = load_config(root / "configs" / "ablations_quick.yaml")  # validates every variant's torso_kwargs
    assert ablations.policies["dream_no_surprise_gating"].policy_kwargs["torso_kwargs"] == {"surprise_gating": False}
    with pytest.raises(ConfigError, match="surprise_gating"):
        load_config(root / "configs" / "ablations_quick.yaml",
                    ["policies.dream_no_surprise_gating.policy_kwargs.torso_kwargs.surprise_gating=maybe"])


# ---------------------------------------------------------------------------- frozen plasticity
def test_frozen_plasticity_turns_the_write_off_and_restores_the_config():
    from dream_rl.torsos import DreamTorso

    torso = DreamTorso(5, 12, num_layers=2, surprise_gating=False)
    before = [c.config for c in torso.cells]
    x = inputs(torso.cells[0], T=20).float()
    state = torch.zeros(3, torso.state_size)
    with torch.no_grad():
        free, _ = torso.run(x, state)
        with frozen_plasticity(torso) as cells:
            assert cells == list(torso.cells)
            assert all(not c.config.fast_weights and not c.config.surprise_gating for c in cells)
            frozen, frozen_state = torso.run(x, state)
        again, _ = torso.run(x, state)
    assert [c.config for c in torso.cells] == before
    assert torch.equal(free, again) and not torch.equal(free, frozen)
    U = DREAMState.from_flat(frozen_state[:, : torso.layer_sizes[0]], torso.cells[0].config).U
    assert U.abs().max() == 0  # from a zero state, the fast weights were never written


def test_frozen_plasticity_restores_after_an_error_and_rejects_models_without_dream():
    cell = make_cell()
    with pytest.raises(RuntimeError, match="boom"), frozen_plasticity(cell):
        raise RuntimeError("boom")
    assert cell.config.fast_weights
    with pytest.raises(DREAMError, match="no DREAM cell"):
        with frozen_plasticity(torch.nn.LSTM(3, 4)):
            pass
    with pytest.raises(DREAMError, match="SB3 model"):
        with frozen_plasticity(object()):
            pass
