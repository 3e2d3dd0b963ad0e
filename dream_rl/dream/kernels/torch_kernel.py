"""The pure-PyTorch DREAM sequence kernel (any device, no compiler) and what every kernel shares.

:class:`Consts` (the configuration scalars a kernel reads) and the constants here are shared with
the C++ kernel's front-end (:mod:`dream_rl.dream.kernels.native`), which checks itself against
:data:`TORCH_KERNEL`; :mod:`dream_rl.dream.kernels.dispatch` dispatches between the two. Imports flow one
way: ``dispatch`` -> ``native`` -> ``torch_kernel``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["Consts", "Saved", "TORCH_KERNEL", "NUM_SCALARS"]

EPS = 1e-6
TAU_MIN, TAU_MAX = 0.01, 100.0
_LOG_2PI_E = math.log(2.0 * math.pi * math.e)

# per-sample scalars saved for the backward, in this order (last axis of `scalars`)
_SC_S, _SC_Z, _SC_ENT, _SC_NSQ, _SC_C, _SC_M, _SC_AT = range(7)
NUM_SCALARS = 7


class Consts(NamedTuple):
    """The configuration scalars the kernels read."""

    dt: float
    lam: float
    alpha: float
    gamma: float
    beta: float
    beta_s: float
    target_norm: float
    kappa: float
    zeta: float
    min_sleep: float
    ltc: bool
    # the ablation switches (DREAMConfig.surprise_gating, .fast_weights, .error_injection); the kernels
    # read only `gating`: the dispatcher hands them η = 0 (no fast weights) or W = 0 (no error injection)
    gating: bool = True
    fast_weights: bool = True
    inject: bool = True

    @classmethod
    def of(cls, cell: nn.Module) -> Consts:
        c = cell.config
        return cls(c.time_step, c.forgetting_rate, c.entropy_influence, c.surprise_temperature,
                   c.error_smoothing, c.surprise_smoothing, c.target_norm, c.kappa, c.sleep_rate,
                   c.min_surprise_for_sleep, c.ltc_enabled, c.surprise_gating, c.fast_weights, c.error_injection)


class Saved(NamedTuple):
    """What the pure-PyTorch backward needs from its forward, time-major (the C++ kernel saves its own
    :class:`dream_rl.dream.kernels.native.NativeSaved`). ``U0`` is the initial fast weights;
    the ``U`` before step ``t > 0`` is ``c[t-1] · U'[t-1]``, recomputed bit for bit."""

    h_prev: Tensor  # (T, B, H) the hidden state before each step
    U_prime: Tensor  # (T, B, H, r) U' (before homeostasis)
    e: Tensor  # (T, B, I) prediction error
    h_target: Tensor  # (T, B, H) tanh(drive)
    em_prev: Tensor  # (T, B, I) error_mean before each step
    ev_prev: Tensor  # (T, B, I) error_var before each step
    scalars: Tensor  # (T, B, NUM_SCALARS) S, z, entropy (unclamped), ‖U'‖², c, sleep mask, adaptive_tau


# ---------------------------------------------------------------------------------------------
# pure-PyTorch kernel (any device); the C++ kernel implements the same loops


class _Scalars:
    """The configuration constants as 0-dim CPU tensors of the compute dtype: a Python float operand
    costs a wrapped-scalar conversion per op, a 0-dim tensor does not."""

    _cache: dict[tuple, _Scalars] = {}

    def __init__(self, k: Consts, dtype: torch.dtype) -> None:
        def c(v: float) -> Tensor:
            return torch.tensor(v, dtype=dtype)

        self.eps, self.eps2, self.tiny, self.one = c(EPS), c(EPS * EPS), c(1e-12), c(1.0)
        self.dt, self.inv_gamma = c(k.dt), c(1.0 / k.gamma)
        self.kappa_tn, self.one_m_kappa = c(k.kappa * k.target_norm), c(1.0 - k.kappa)
        self.zeta, self.two_beta = c(k.zeta), c(2.0 * k.beta)
        self.one_m_beta, self.one_m_beta_s = c(1.0 - k.beta), c(1.0 - k.beta_s)
        self.beta, self.beta_s = c(k.beta), c(k.beta_s)
        self.one_m_dl, self.neg_kappa_tn = c(1.0 - k.dt * k.lam), c(-k.kappa * k.target_norm)
        self.half, self.half_log_2pi_e = c(0.5), c(0.5 * _LOG_2PI_E)
        self.neg_alpha = c(-k.alpha)

    @classmethod
    def of(cls, k: Consts, dtype: torch.dtype) -> _Scalars:
        key = (k, dtype)
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = cls(k, dtype)
        return found


class _TorchKernel:
    """The time loop in PyTorch ops (forward without autograd, hand-written backward). Same
    arithmetic as the reference up to rounding (e.g. ``lerp`` for the running averages)."""

    name = "torch"

    @staticmethod
    def forward(k: Consts, V: Tensor, x: Tensor, params: tuple, states: tuple, save: bool):
        Win, b, R, C, Werr, eta, lts, lss = params
        h, U, Ut, at, em, ev, avg = states
        T, B, I = x.shape
        H, r = R.shape[0], V.shape[1]
        c = _Scalars.of(k, x.dtype)
        dt, dl, beta, beta_s = k.dt, k.dt * k.lam, k.beta, k.beta_s
        x2 = x.reshape(T * B, I)
        xWs = torch.addmm(b, x2, Win.t()).view(T, B, H).unbind(0)  # B x + b, whole sequence
        xfs = (x2 @ V).view(T, B, 1, r).unbind(0)  # Vᵀ x, whole sequence
        xs = x.unbind(0)
        RCt = torch.cat([R, C], 0).t()  # (H, H + I): [R h, C h] in one product
        WerrT, Vt = Werr.t(), V.t()
        if k.ltc:
            tau_sys = lts.exp()
            scale = lss.exp()
        outs, rec_h, rec_up, rec_e, rec_ht, rec_em, rec_ev, rec_sc = ([] for _ in range(8))
        for t in range(T):
            hR, hC = torch.mm(h, RCt).split([H, I], 1)
            recall = (h.unsqueeze(2) * U).sum(1)  # Uᵀh (B, r)
            e = xs[t] - torch.addmm(hC, recall, Vt)
            d = e - em
            q = (d * d).div_(ev + c.eps).mean(1)
            z = (q + c.tiny).sqrt_()
            n = z / (z + c.one)
            ent = torch.add(c.half_log_2pi_e, torch.log(ev.mean(1) + c.eps), alpha=0.5)
            thr = torch.addcmul(at, at, ent.clamp(0.0, 2.0), value=k.alpha)
            S = torch.sigmoid((n - thr).mul_(c.inv_gamma)) if k.gating else torch.ones_like(n)
            S1 = S.unsqueeze(1)
            ef = e @ V
            gh = eta * S1 * h
            Up = torch.lerp(U, Ut, dl).addcmul_(gh.unsqueeze(2), ef.unsqueeze(1), value=dt)
            nsq = (Up * Up).sum((1, 2))
            norm = nsq.clamp_min(c.eps2).sqrt_()
            cc = norm.clamp_min(k.target_norm).reciprocal_().mul_(c.kappa_tn).add_(c.one_m_kappa)
            Un = Up * cc.view(-1, 1, 1)
            drive = torch.addmm(xWs[t] + hR, S1 * e, WerrT).add_((Un * xfs[t]).sum(2))
            ht = torch.tanh(drive)
            if k.ltc:
                te = (tau_sys / (S1 * scale + c.one)).clamp_(TAU_MIN, TAU_MAX)
                hn = torch.lerp(h, ht, (te + c.dt).reciprocal_().mul_(c.dt))
            else:
                hn = ht
            avg = torch.lerp(avg, S, beta_s)
            m = (avg < k.min_sleep).to(x.dtype)
            if save:
                rec_h.append(h), rec_up.append(Up), rec_e.append(e), rec_ht.append(ht)
                rec_em.append(em), rec_ev.append(ev)
                rec_sc.append(torch.stack([S, z, ent, nsq, cc, m, at], dim=1))
            em = torch.lerp(em, e, beta)
            ev = torch.lerp(ev, d * d, beta)
            at = torch.lerp(at, n, beta)
            Ut = torch.lerp(Ut, Un, (m * c.zeta).view(-1, 1, 1))
            U, h = Un, hn
            outs.append(hn)
        out = torch.stack(outs)
        saved = None
        if save:
            saved = Saved(*(torch.stack(v) for v in (rec_h, rec_up, rec_e, rec_ht, rec_em, rec_ev, rec_sc)))
        return out, (U, Ut, at, em, ev, avg), saved

    @staticmethod
    def backward(k: Consts, V: Tensor, x: Tensor, h0: Tensor, U0: Tensor, out: Tensor, params: tuple, saved: Saved,
                 g_out: Tensor, g_final: tuple):
        Win, b, R, C, Werr, eta, lts, lss = params
        T, B, H = saved.h_prev.shape
        I, r = saved.e.shape[2], V.shape[1]
        c = _Scalars.of(k, x.dtype)
        dl, beta, beta_s = k.dt * k.lam, k.beta, k.beta_s
        xfs = (x.reshape(T * B, I) @ V).view(T, B, 1, r).unbind(0)
        RW = torch.cat([R, Werr], 1)  # (H, H + I): [Rᵀ g, Wᵀ g] in one product
        Vt = V.t()
        hs, Ups, es, hts, ems, evs = (v.unbind(0) for v in saved[:6])
        scs = saved.scalars.unbind(0)
        c3s = saved.scalars[..., _SC_C].reshape(T, B, 1, 1).unbind(0)
        g_outs = g_out.unbind(0)
        gU, gUt, gat, gem, gev, gas = g_final
        if k.ltc:
            tau_sys = lts.exp()
            scale = lss.exp()
            g_lts = torch.zeros_like(lts)
            g_lss_sum = torch.zeros((), dtype=x.dtype, device=x.device)
        gh: Tensor | None = None
        gD_list, gE_list, gXF_list, g_eta_list = [], [], [], []
        for t in range(T - 1, -1, -1):
            h, e, ht, em, ev, Up = hs[t], es[t], hts[t], ems[t], evs[t], Ups[t]
            S, z, ent, nsq, cc, m, at = scs[t].unbind(1)
            S1, c3 = S.unsqueeze(1), c3s[t]
            Un = Up * c3
            U_prev = U0 if t == 0 else Ups[t - 1] * c3s[t - 1]
            ghn = g_outs[t] if gh is None else g_outs[t] + gh
            # 9. liquid time constant; 8. tanh
            if k.ltc:
                Dn = S1 * scale + c.one
                traw = tau_sys / Dn
                te = traw.clamp(TAU_MIN, TAU_MAX)
                tpd = te + c.dt
                g_ht = tpd.reciprocal().mul_(c.dt).mul_(ghn)
                gh = ghn - g_ht
                # ∂L/∂τ_raw · τ_raw; the clamp passes the gradient where it is the identity (ends included)
                g_tr = (h - ht).mul_(ghn).div_(tpd * tpd).mul_(traw).mul_(c.dt).mul_(te == traw)
                g_lts += g_tr.sum(0)
                g_Dn_neg = (g_tr / Dn).sum(1)
                gS = g_Dn_neg * (-scale)
                g_lss_sum += torch.dot(g_Dn_neg, S)
            else:
                g_ht = ghn
                gh = gS = None  # h_new = h*: no direct path from h
            g_drive = torch.addcmul(g_ht, g_ht * ht, ht, value=-1.0)
            gD_list.append(g_drive)
            g_hR, g_Se = torch.mm(g_drive, RW).split([H, I], 1)
            gh = g_hR if gh is None else gh + g_hR
            # 10. statistics (gradients arriving from the next step); 8. S·e
            gSe = (g_Se * e).sum(1)
            gS = torch.add(gSe if gS is None else gS + gSe, gas, alpha=beta_s)
            gas = gas * c.one_m_beta_s
            gn = gat * c.beta
            gat = gat * c.one_m_beta
            d = e - em
            g_e = torch.add(S1 * g_Se, gem, alpha=beta)
            g_d = (d * gev).mul_(c.two_beta)
            gem = gem * c.one_m_beta
            gev = gev * c.one_m_beta
            # 11. sleep; 8. read-out of U_new
            zm3 = (m * c.zeta).view(-1, 1, 1)
            gd3 = g_drive.unsqueeze(2)
            gUn = torch.addcmul(gU, zm3, gUt).addcmul_(gd3, xfs[t])
            gXF_list.append((gd3 * Un).sum(1))
            gUt = torch.addcmul(gUt, zm3, gUt, value=-1.0)
            # 7. homeostasis (clamp_min passes the gradient where it is the identity, ties included)
            ncl = nsq.clamp_min(c.eps2)
            norm = ncl.sqrt()
            nc = norm.clamp_min(k.target_norm)
            g_c = (gUn * Up).sum((1, 2))
            g_norm = g_c.div(nc * nc).mul_(c.neg_kappa_tn).mul_(nc == norm)
            g_nsq2 = g_norm.div_(norm).mul_(ncl == nsq)  # 2 ∂L/∂‖U'‖²
            g_Up = torch.addcmul(gUn * c3, g_nsq2.view(-1, 1, 1), Up)
            # 6. Hebbian write
            gU = g_Up * c.one_m_dl
            gUt = torch.add(gUt, g_Up, alpha=dl)
            ef = e @ V
            gate = eta * S1
            g_ghv = (g_Up * ef.unsqueeze(1)).sum(2).mul_(c.dt)  # ∂L/∂(gate·h)
            g_ef = (g_Up * (gate * h).unsqueeze(2)).sum(1).mul_(c.dt)
            gh = torch.addcmul(gh, g_ghv, gate)
            g_gate = g_ghv * h
            g_eta_list.append(g_gate * S1)
            gS = gS + torch.mv(g_gate, eta)
            g_e = torch.addmm(g_e, g_ef, Vt)
            # 5-3. surprise, threshold, entropy
            # S ≡ 1 without gating: a constant, nothing flows back into the novelty or the threshold
            g_y = (S - S * S).mul_(gS).mul_(c.inv_gamma) if k.gating else torch.zeros_like(S)
            gn = gn + g_y
            ent_c = ent.clamp(0.0, 2.0)
            gat = torch.addcmul(gat - g_y, g_y, ent_c, value=-k.alpha)
            g_ent = (g_y * at).mul_(c.neg_alpha).mul_(ent_c == ent)
            g_mvI = g_ent.div_(ev.mean(1) + c.eps).mul_(0.5 / I)
            # 2. novelty
            zp = z + c.one
            gqI = gn.div(zp * zp * z).mul_(0.5 / I).unsqueeze(1)
            w = (ev + c.eps).reciprocal_()
            dw = d * w
            g_d = g_d.addcmul_(gqI, dw, value=2.0)
            gev = (gev + g_mvI.unsqueeze(1)).addcmul_(gqI, dw * dw, value=-1.0)
            g_e = g_e + g_d
            gem = gem - g_d
            gE_list.append(g_e)
            # 1. prediction
            g_rec_neg = g_e @ V  # -∂L/∂(Uᵀh)
            gh = torch.addmm(gh, g_e, C, alpha=-1.0).sub_((U_prev * g_rec_neg.unsqueeze(1)).sum(2))
            gU = torch.addcmul(gU, h.unsqueeze(2), g_rec_neg.unsqueeze(1), value=-1.0)
        G_D = torch.stack(gD_list[::-1])
        G_E = torch.stack(gE_list[::-1])
        G_XF = torch.stack(gXF_list[::-1])
        g_eta = torch.stack(g_eta_list).sum((0, 1))
        if k.ltc:
            g_lss = (g_lss_sum * -scale).reshape(1)
        else:
            g_lts, g_lss = torch.zeros_like(lts), torch.zeros_like(lss)
        return G_D, G_E, G_XF, g_eta, g_lts, g_lss, (gh, gU, gUt, gat, gem, gev, gas), None


TORCH_KERNEL = _TorchKernel()
