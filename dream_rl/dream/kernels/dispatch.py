"""Fast whole-sequence DREAM kernels behind :meth:`DREAMCell.run_time_major`.

:meth:`DREAMCell.step` is the reference; everything here computes the same function (outputs,
final state and gradients, allclose in float64: ``tests/kernels/test_dream_kernels.py``) faster:

- what depends on the input only (``B x + b``, ``Vᵀ x``) is computed apart from the recurrence
  (the pure-PyTorch kernel: one matrix product for the whole sequence), ``R h`` and ``C h`` share
  one product per step (``[R; C] h``), and so do ``Rᵀ g`` and ``Wᵀ g`` in the backward;
- the time loop runs without autograd and saves only what the backward needs (the hidden states,
  ``U'`` of every step, the error, ``tanh(drive)`` and a few per-sample scalars); a hand-written
  backward walks the loop in reverse (:class:`_SequenceFunction`), and the weight gradients of
  ``R``, ``C`` and ``W`` are one matrix product each over the whole sequence;
- with gradients disabled (rollouts) nothing is saved and no autograd node is built.

Two backends run the time loop:

``"native"``
    a C++ kernel (``dream_rl/_native/dream_seq.cpp``), CPU, float32 and float64, compiled on first
    use with the system C++ compiler and cached (see :mod:`dream_rl.dream.kernels.native`). It removes the
    per-op dispatch cost that dominates at RL sizes.
``"torch"``
    the same algorithm in pure PyTorch ops (:mod:`dream_rl.dream.kernels.torch_kernel`): always available (any
    device, no compiler).

The ablation switches of :class:`~dream_rl.DREAMConfig` run on both kernels: ``surprise_gating=False``
is a flag of the kernels (``S ≡ 1`` in the forward, no gradient through ``S`` in the backward);
``fast_weights=False`` and ``error_injection=False`` hand the kernels zeros in place of ``η`` or ``W``
(:func:`_ablated`), which removes the term exactly.

``"auto"`` (the default) picks ``native`` where it applies (CPU, float32/float64, extension
built) and ``torch`` otherwise; ``"reference"`` runs the eager :meth:`DREAMCell.step` loop, which
``"auto"`` also falls back to for what the kernels do not take (mixed devices or dtypes, T = 0,
a trainable sensory filter, tracing by ``torch.compile`` or a ``torch.func`` transform).
Select with :func:`set_backend` (process-wide), the ``DREAM_RL_BACKEND`` environment variable
(initial value), or per cell with ``cell.sequence_backend = "torch"``.
``DREAM_RL_NO_EXTENSION=1`` disables the C++ kernel.

Gradient semantics follow the reference's autograd exactly, including at the piecewise points:
``clamp``/``clamp_min`` pass the gradient where the input lies inside the closed range (equality
included), and the sleep mask is a constant.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from dream_rl._native.backends import BACKENDS, check_backend, get_backend, set_backend
from dream_rl.dream.kernels import native
from dream_rl.dream.kernels.torch_kernel import _SC_S, TORCH_KERNEL, Consts
from dream_rl.dream.state import DREAMState
from dream_rl.errors import KernelError

__all__ = ["BACKENDS", "set_backend", "get_backend", "native_available", "run_sequence"]



def native_available() -> bool:
    """Whether the C++ kernel is usable (builds it on first call; never raises)."""
    return native.load() is not None


# ---------------------------------------------------------------------------------------------
# dispatch


def run_sequence(cell: nn.Module, x: Tensor, state: DREAMState, backend: str | None = None,
                 validated: bool = False) -> tuple[Tensor, DREAMState]:
    """``x`` (T, B, I) → outputs (T, B, H) and the final state, with the selected backend.

    ``cell`` is a :class:`~dream_rl.DREAMCell` (typed as a module: the kernels sit below the cell and
    read only its parameters, its ``config`` and :meth:`reference_run_time_major`).

    ``validated``: True only from :class:`DREAMCell` right after its ``_check_structure(x, state)``
    (shapes for the cell's config and the batch of ``x``; dtype and device of ``weight_in``), so
    the state's shapes, dtypes and devices are not checked again on the no-grad path; see
    ``states_validated_for`` in :meth:`dream_rl.dream.kernels.native._NativeKernel.forward` for what is still
    checked there."""
    name = backend or get_backend()
    try:  # direct dict access: nn.Module.__getattr__ is slow at T = 1
        p = cell._parameters
        params = (p["weight_in"], p["bias"], p["weight_rec"], p["weight_pred"], p["weight_err"], p["plasticity"],
                  p["log_tau_sys"], p["log_surprise_scale"])
        V = cell._buffers["sensory_filter"]
    except KeyError:  # e.g. a parametrized weight (torch.nn.utils.parametrize): go through the attributes
        params = tuple(getattr(cell, n) for n in ("weight_in", "bias", "weight_rec", "weight_pred", "weight_err",
                                                   "plasticity", "log_tau_sys", "log_surprise_scale"))
        V = cell.sensory_filter
    cfg = cell.config
    if not (cfg.fast_weights and cfg.error_injection):
        params = _ablated(params, cfg.fast_weights, cfg.error_injection)
    states = (state.h, state.U, state.U_target, state.adaptive_tau, state.error_mean, state.error_var,
              state.avg_surprise)
    # the cell's check gave every state tensor x's dtype and device: _supported need not look again
    unchecked_states = () if validated else states
    if name == "reference" or x.shape[0] == 0 or _traced(x) or not _supported(x, V, params, unchecked_states):
        if name not in ("reference", "auto"):
            raise KernelError(f"the {name!r} DREAM kernel needs T >= 1, every tensor on one device with one "
                             "floating dtype, and no gradient on the sensory filter; use backend 'auto'")
        return cell.reference_run_time_major(x, state)
    if name == "auto" or name == "native":
        kernel = None
        if x.is_cpu and (x.dtype == torch.float32 or x.dtype == torch.float64):
            kernel = native.load()
        if kernel is None:
            if name == "native":
                raise KernelError(
                    "the native DREAM kernel is not available here (CPU float32/float64 only, needs a C++ "
                    f"compiler; {native.unavailable_reason()}); use backend 'auto' or 'torch'"
                )
            kernel = TORCH_KERNEL
    elif name == "torch":
        kernel = TORCH_KERNEL
    else:
        check_backend(name, "DREAM sequence")

    k = Consts.of(cell)  # read every call, as the reference does (the config is a mutable dataclass)
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in params)
                                    or any(t.requires_grad for t in states)):
        out, U, Ut, at, em, ev, avg = _SequenceFunction.apply(kernel, k, V, x, *params, *states)
        return out, DREAMState(out[-1], U, Ut, at, em, ev, avg)
    # no tensor needs a gradient here (or grad mode is off): the kernel builds no graph, saves nothing
    if validated and kernel is not TORCH_KERNEL:  # the rollout path: the state's shapes were just checked
        cfg = cell.config
        out, final, _ = kernel.forward(k, V, x, params, states, False,
                                       states_validated_for=(cfg.hidden_dim, cfg.rank))
    else:
        out, final, _ = kernel.forward(k, V, x, params, states, False)
    return out, DREAMState(out[-1], *final)


def _ablated(params: tuple, fast_weights: bool, error_injection: bool) -> tuple:
    """The kernels' parameters for the ablations that remove a term: without fast weights the
    plasticity ``η`` is replaced by zeros (the Hebbian write ``η S h (Vᵀe)ᵀ`` is then exactly 0), without
    error injection ``W`` is (``W (S e)`` is 0). The zeros need no gradient, so the cell's own ``η`` or
    ``W`` gets none, as in the reference step, which leaves the term out."""
    Win, b, R, C, Werr, eta, lts, lss = params
    if not fast_weights:
        eta = torch.zeros_like(eta, requires_grad=False)
    if not error_injection:
        Werr = torch.zeros_like(Werr, requires_grad=False)
    return Win, b, R, C, Werr, eta, lts, lss


def _traced(x: Tensor) -> bool:
    """Under torch.compile or a torch.func transform (vmap, grad, ...) the reference loop runs: it is
    made of ordinary traceable ops, while the kernels take raw buffers."""
    return torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x)


def _supported(x: Tensor, V: Tensor, params: tuple, states: tuple) -> bool:
    """Everything on one device with one floating dtype, and the fixed filter not trained."""
    dtype, device = x.dtype, x.device
    if not dtype.is_floating_point or V.requires_grad or V.dtype != dtype or V.device != device:
        return False
    for t in params:
        if t.dtype != dtype or t.device != device:
            return False
    for t in states:
        if t.dtype != dtype or t.device != device:
            return False
    return True


class _SequenceFunction(torch.autograd.Function):
    """The whole sequence as one autograd node, with a hand-written backward."""

    @staticmethod
    def forward(ctx: Any, kernel: Any, k: Consts, V: Tensor, x: Tensor, Win: Tensor, b: Tensor,
                R: Tensor, C: Tensor, Werr: Tensor, eta: Tensor, lts: Tensor, lss: Tensor,
                h0: Tensor, U0: Tensor, Ut0: Tensor, at0: Tensor, em0: Tensor, ev0: Tensor, as0: Tensor):
        params = (Win, b, R, C, Werr, eta, lts, lss)
        out, final, saved = kernel.forward(k, V, x, params, (h0, U0, Ut0, at0, em0, ev0, as0), True)
        ctx.kernel, ctx.k, ctx.saved_type = kernel, k, type(saved)
        ctx.save_for_backward(V, x, h0, U0, out, *params, *saved)
        return (out, *final)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_out: Tensor, gU: Tensor, gUt: Tensor, gat: Tensor, gem: Tensor, gev: Tensor, gas: Tensor):
        V, x, h0, U0, out, Win, b, R, C, Werr, eta, lts, lss, *rest = ctx.saved_tensors
        saved = ctx.saved_type(*rest)
        k = ctx.k
        G_D, G_E, G_XF, g_eta, g_lts, g_lss, g_state, extras = ctx.kernel.backward(
            k, V, x, h0, U0, out, (Win, b, R, C, Werr, eta, lts, lss), saved, g_out, (gU, gUt, gat, gem, gev, gas)
        )
        T, B, H = G_D.shape
        I = G_E.shape[2]
        need = ctx.needs_input_grad
        gd = G_D.reshape(T * B, H)
        ge = G_E.reshape(T * B, I)
        # the weight gradients: one product each over the whole sequence
        g_x = g_Win = g_b = g_R = g_C = g_Werr = None
        if need[3]:
            g_x = torch.addmm(ge, gd, Win)
            g_x = torch.addmm(g_x, G_XF.reshape(T * B, -1), V.t()).view(T, B, I)
        if extras is not None:  # the C++ kernel: A = [h_prev | x | S e] and the bias gradient, built as it went
            g_b, A = extras
            A = A.reshape(T * B, H + 2 * I)
            hp = A[:, :H]
            if need[4] or need[6] or need[8]:
                g_R, g_Win, g_Werr = (gd.t() @ A).split([H, I, I], 1)  # one product for three weights
        else:
            hp = torch.cat([h0.unsqueeze(0), out[:-1]]).reshape(T * B, H)  # the hidden state before each step
            if need[4]:
                g_Win = gd.t() @ x.reshape(T * B, I)
            if need[5]:
                g_b = gd.sum(0)
            if need[6]:
                g_R = gd.t() @ hp
            if need[8]:
                se = saved.e * saved.scalars[..., _SC_S].unsqueeze(2)
                g_Werr = gd.t() @ se.reshape(T * B, I)
        if need[7]:
            g_C = -(ge.t() @ hp)
        g_Win = g_Win if need[4] else None
        g_b = g_b if need[5] else None
        g_R = g_R if need[6] else None
        g_Werr = g_Werr if need[8] else None
        if not k.ltc:
            g_lts = g_lss = None  # unused, as in the reference: their .grad stays None
        if not need[9]:
            g_eta = None  # e.g. the zeros standing for η without fast weights (_ablated)
        return (None, None, None, g_x, g_Win, g_b, g_R, g_C, g_Werr, g_eta, g_lts, g_lss, *g_state)
