"""A plain NumPy implementation of the phase-recovery steps , run on a whole file and
compared with the streaming C++ core.

The reference follows the algorithm as written, in float64, one frame / channel / stem at a
time: peaks above -40 dB, QIFFT on the log magnitude, regions of influence split at the
magnitude-weighted point, PU, the normalised-flux onset detector, then wiener / pu-iter /
anisotropic. Only the decisions (peak, region, onset) are evaluated in float32 like the core,
so that both take the same branches.
"""

from __future__ import annotations

import numpy as np
import pytest
from livedemix.phase import DEFAULT_KAPPA, PhaseRecovery, default_n_iter
from phase_support import oracle_inputs, song
from scipy.special import iv

f32 = np.float32


class ReferencePhaseRecovery:
    def __init__(
        self,
        J,
        C,
        n_fft,
        hop,
        mode="pu-iter",
        n_iter=None,
        kappa=DEFAULT_KAPPA,
        peak_db=-40.0,
        onset_floor=0.2,
        onset_ratio=2.0,
        onset_smoothing=0.1,
    ):
        self.J, self.C, self.n_fft, self.hop, self.F = J, C, n_fft, hop, n_fft // 2 + 1
        self.mode, self.n_iter, self.kappa = mode, default_n_iter(hop) if n_iter is None else n_iter, kappa
        self.peak_lin = f32(10.0) ** f32(peak_db / 20.0)
        self.onset_floor, self.onset_ratio, self.onset_smoothing = (
            f32(onset_floor),
            f32(onset_ratio),
            f32(onset_smoothing),
        )
        self.prev_u = np.ones((J, C, self.F), complex)
        self.prev_v = np.zeros((J, C, self.F), np.float32)
        self.mean = np.zeros((J, C), np.float32)
        self.started = np.zeros((J, C), bool)
        f = np.arange(self.F)
        self.bin_adv = np.exp(2j * np.pi * ((hop * f) % n_fft) / n_fft)
        # von Mises moments
        if kappa > 0:
            i0, i1, i2 = iv(0, kappa), iv(1, kappa), iv(2, kappa)
            self.lk, self.rho = i1 / i0, (i2 * i0 - i1**2) / i0**2
        else:
            self.lk, self.rho = 0.0, 0.0

    # -- steps -------------------------------------------------------------------------
    def onset(self, j, c, v):
        sum_v = np.sum(v, dtype=np.float64)
        flux = np.sum(np.maximum(v - self.prev_v[j, c], 0), dtype=np.float64)
        self.prev_v[j, c] = v
        if not self.started[j, c]:
            self.started[j, c] = True
            self.mean[j, c] = 0
            return True
        d = f32(min(flux / sum_v, 1.0)) if sum_v > 0 else f32(0)
        onset = bool(d > self.onset_floor and d > self.onset_ratio * self.mean[j, c])
        self.mean[j, c] = self.mean[j, c] + self.onset_smoothing * (d - self.mean[j, c])
        return onset

    def unwrap(self, j, c, v):
        """PU phasor for stem j, channel c (no onset)."""
        F = self.F
        vmax = v.max()
        thr = f32(vmax) * self.peak_lin
        k = np.arange(1, F - 1)
        is_peak = (v[k] > thr) & (v[k] > v[k - 1]) & (v[k] >= v[k + 1]) if vmax > 0 else np.zeros(F - 2, bool)
        peaks = k[is_peak]
        if peaks.size == 0:
            return self.prev_u[j, c] * self.bin_adv
        # QIFFT on the log magnitude: with alpha, beta, gamma the logs of the neighbours and the
        # peak, delta = (alpha - gamma) / (2 (alpha - 2 beta + gamma)), written with the log ratios
        # ra = alpha - beta, rc = gamma - beta (a zero neighbour counts as 1e-30 of the peak).
        vd = v.astype(np.float64)
        ra = np.log(np.maximum(vd[peaks - 1] / vd[peaks], 1e-30))
        rc = np.log(np.maximum(vd[peaks + 1] / vd[peaks], 1e-30))
        den = ra + rc
        delta = np.where(den < -1e-12, 0.5 * (ra - rc) / np.where(den < -1e-12, den, -1), 0.0)
        delta = np.clip(delta, -0.5, 0.5)
        nu = (peaks + delta) / self.n_fft  # cycles per sample
        adv = np.exp(2j * np.pi * self.hop * nu)
        amp = v[peaks].astype(np.float32)
        # boundary between peaks p and p+1: (A_{p+1} k_p + A_p k_{p+1}) / (A_p + A_{p+1}), in float32
        kp = peaks.astype(np.float32)
        bnd = (amp[1:] * kp[:-1] + amp[:-1] * kp[1:]) / (amp[:-1] + amp[1:])
        ends = np.minimum(np.floor(bnd).astype(int), F - 1)
        region = np.searchsorted(ends, np.arange(F), side="left")  # number of boundaries < f
        return self.prev_u[j, c] * adv[region]

    def process(self, X, V):
        X = np.where(np.isfinite(X), X, 0).astype(complex)
        V = np.where(np.isfinite(V), np.maximum(V, 0), 0).astype(np.float32)
        J, F = self.J, self.F
        out = np.zeros((J, self.C, F), complex)
        for c in range(self.C):
            x = X[c]
            v = V[:, c].astype(np.float64)
            den = np.sum(v**2, axis=0)
            lam = np.where(den > 0, v**2 / np.where(den > 0, den, 1), 1.0 / J)
            ax = np.abs(x)
            xphase = np.where(ax > 0, x / np.where(ax > 0, ax, 1), 1)
            P = np.empty((J, F), complex)
            for j in range(J):
                P[j] = (
                    xphase
                    if self.onset(j, c, V[j, c])
                    else (self.unwrap(j, c, V[j, c]) if self.mode != "wiener" else 0)
                )
            if self.mode == "wiener":
                Y = lam * x
                u = np.where(ax > 0, xphase, self.prev_u[:, c])
            elif self.mode == "pu-iter":
                S = v * P
                for it in range(self.n_iter):
                    E = x - S.sum(0)
                    Y = S + lam * E
                    aY = np.abs(Y)
                    if it + 1 < self.n_iter:
                        S = v * np.where(aY > 0, Y / np.where(aY > 0, aY, 1), 0)
                u = np.where(np.abs(Y) > 0, Y / np.maximum(np.abs(Y), 1e-300), P)
            else:  # anisotropic Wiener, von Mises prior on the phase centred on the PU phase
                vv = v**2
                m = self.lk * v * P
                gam = (1 - self.lk**2) * vv
                cc = self.rho * vv * P**2
                mX, gX, cX = m.sum(0), gam.sum(0), cc.sum(0)
                Z = x - mX
                D = gX**2 - np.abs(cX) ** 2
                ok = D > 1e-6 * gX**2
                Dsafe = np.where(ok, D, 1)
                Shat = m + np.where(
                    ok, ((gam * gX - cc * np.conj(cX)) * Z + (cc * gX - gam * cX) * np.conj(Z)) / Dsafe, lam * Z
                )
                Y = Shat + lam * (x - Shat.sum(0))
                u = np.where(np.abs(Y) > 0, Y / np.maximum(np.abs(Y), 1e-300), P)
            out[:, c] = Y
            self.prev_u[:, c] = u
        return out


def _run_both(mode, X, V, **kw):
    T, J, C, F = V.shape
    core = PhaseRecovery(J, C, 1024, 256, mode=mode, **kw).process_stft(X, V)
    ref = ReferencePhaseRecovery(J, C, 1024, 256, mode=mode, **kw)
    want = np.stack([ref.process(X[t], V[t]) for t in range(T)])
    return core, want


def _compare(mode, X, V, **kw):
    core, want = _run_both(mode, X, V, **kw)
    scale = np.abs(X).max()
    d = np.abs(core - want)
    return d.max() / scale, np.linalg.norm(d) / np.linalg.norm(want), np.mean(d > 1e-4 * scale)


@pytest.fixture(scope="module")
def whole_file():
    stems = song(seconds=4.0, seed=3)
    _, X, V = oracle_inputs(stems)
    return X, V


@pytest.mark.parametrize(
    "mode,kw",
    [
        ("wiener", {}),
        ("pu-iter", {"n_iter": 1}),
        ("pu-iter", {"n_iter": 4}),
        ("anisotropic", {"kappa": 0.5}),
        ("anisotropic", {"kappa": DEFAULT_KAPPA}),
    ],
)
def test_streaming_core_matches_numpy_reference(whole_file, mode, kw):
    X, V = whole_file
    max_rel, l2_rel, frac = _compare(mode, X, V, **kw)
    print(f"{mode} {kw}: max |core - reference| / max|X| = {max_rel:.2e}, relative L2 {l2_rel:.2e}")
    assert max_rel < 1e-4


def test_default_pu_iter_matches_numpy_reference(whole_file):
    """At the product default n_iter the core and the reference part in a few bins of the first
    frames, and only there. When every stem starts at once (frame 0 here), every stem takes the
    mixture's phase: all S_j are collinear with X, an unstable fixed point of the PU-Iter
    iteration, and float rounding decides which way each bin leaves it. With <= 8 iterations
    per frame nothing grows enough to show; at 32 (the default at hop 256) about 0.02 % of the
    bin values, all in the first ~200 frames, differ, then the two runs agree again. Checked: after the first 200 frames
    (1.2 s) the core matches the reference within 1e-4 everywhere."""
    X, V = whole_file
    n_iter = default_n_iter(256)
    core, want = _run_both("pu-iter", X, V, n_iter=n_iter)
    scale = np.abs(X).max()
    d = np.abs(core - want) / scale
    late = d[200:].max()
    frac = np.mean(d > 1e-4)
    print(
        f"pu-iter n_iter={n_iter}: max |core - reference| / max|X| after frame 200: {late:.2e}; "
        f"whole file: max {d.max():.2e}, bins off by > 1e-4: {100 * frac:.4f}%"
    )
    assert d.shape[0] > 600
    assert late < 1e-4
    assert frac < 1e-3


def test_pu_iter_8_matches_numpy_reference_everywhere(whole_file):
    X, V = whole_file
    max_rel, l2_rel, _ = _compare("pu-iter", X, V, n_iter=8)
    print(f"pu-iter n_iter=8: max {max_rel:.2e}, relative L2 {l2_rel:.2e}")
    assert max_rel < 1e-4
