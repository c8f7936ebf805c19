"""livedemix.phase.PhaseRecovery: transparency, robustness, API and streaming behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from livedemix import _core
from livedemix.phase import MODES, PhaseRecovery, default_n_iter
from phase_support import istft, oracle_inputs, sdr, song
from scipy.special import iv

MODE_KW = [
    ("wiener", {}),
    ("pu-iter", {}),
    ("pu-iter", {"n_iter": 1}),
    ("pu-iter", {"n_iter": 32}),
    ("anisotropic", {}),
    ("anisotropic", {"kappa": 0.0}),
    ("anisotropic", {"kappa": 50.0}),
    ("wiener", {"mask_power": 1.0}),
    ("pu-iter", {"mask_power": 1.0}),
    ("anisotropic", {"mask_power": 1.0}),
    ("wiener", {"mask_power": 0.6}),
    ("pu-iter", {"mask_power": 3.0}),
]


def rel_err(Y, X):
    """||sum_j Y_j - X|| / ||X|| over everything."""
    return np.linalg.norm(Y.sum(axis=-3) - X) / np.linalg.norm(X)


def random_frames(T, J, C, F, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((T, C, F)) + 1j * rng.standard_normal((T, C, F))).astype(np.complex64)
    V = np.abs(rng.standard_normal((T, J, C, F))).astype(np.float32)
    V[:, :, :, ::23] *= 20  # some peaks
    return X, V


@pytest.fixture(scope="module")
def real_song():
    return oracle_inputs(song(seconds=4.0, seed=1))


# -- transparency --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,kw", MODE_KW)
def test_transparency_random(mode, kw):
    X, V = random_frames(60, 4, 2, 513, seed=1)
    Y = PhaseRecovery(4, 2, 1024, 256, mode=mode, **kw).process_stft(X, V)
    per_frame = np.linalg.norm(Y.sum(1) - X, axis=(1, 2)) / np.linalg.norm(X, axis=(1, 2))
    print(f"{mode} {kw}: worst per-frame relative error {per_frame.max():.2e}")
    assert per_frame.max() < 1e-6


@pytest.mark.parametrize("mode,kw", MODE_KW)
def test_transparency_real_music(real_song, mode, kw):
    refs, X, V = real_song
    # Separator-like magnitudes: the oracle ones, perturbed (a real separator is never exact).
    rng = np.random.default_rng(0)
    V_est = (V * np.exp(0.3 * rng.standard_normal(V.shape))).astype(np.float32)
    Y = PhaseRecovery(4, 2, 1024, 256, mode=mode, **kw).process_stft(X, V_est)
    err = rel_err(Y, X)
    print(f"{mode} {kw}: relative error {err:.2e}")
    assert err < 1e-6
    # and in the time domain, after the ISTFT of each stem
    n = refs.shape[-1]
    y = istft(Y.transpose(1, 0, 2, 3).astype(np.complex128), 1024, 256, length=n)
    assert np.linalg.norm(y.sum(0) - refs.sum(0)) / np.linalg.norm(refs.sum(0)) < 1e-6


# -- robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("J", [1, 4, 8])
def test_bad_inputs_stay_finite_and_stream_recovers(mode, J):
    C, F = 2, 513
    pr = PhaseRecovery(J, C, 1024, 256, mode=mode)
    X, V = random_frames(40, J, C, F, seed=J)
    out = np.empty((J, C, F), np.complex64)
    bad = {
        "V zero": (X[0], np.zeros_like(V[0])),
        "X zero": (np.zeros_like(X[0]), V[0]),
        "both zero": (np.zeros_like(X[0]), np.zeros_like(V[0])),
        "V NaN": (X[0], np.where(np.arange(F) % 3 == 0, np.nan, V[0]).astype(np.float32)),
        "V Inf": (X[0], np.where(np.arange(F) % 5 == 0, np.inf, V[0]).astype(np.float32)),
        "X NaN": (np.where(np.arange(F) % 7 == 0, np.nan + 0j, X[0]).astype(np.complex64), V[0]),
        "X Inf": (np.full_like(X[0], np.inf), V[0]),
        "V negative": (X[0], -V[0]),
        "huge": (X[0] * 1e30, V[0] * 1e30),
    }
    t = 0
    for name, (Xb, Vb) in bad.items():
        for _ in range(5):  # good frames
            pr.process(X[t % 40], V[t % 40], out)
            t += 1
        pr.process(Xb, Vb, out)
        assert np.all(np.isfinite(out)), name
        if name in ("V zero", "V NaN", "V Inf", "V negative", "both zero"):
            assert np.linalg.norm(out.sum(0) - Xb) <= 1e-6 * max(np.linalg.norm(Xb), 1e-30) + 1e-30, name
        for _ in range(5):  # the stream recovers
            pr.process(X[t % 40], V[t % 40], out)
            assert np.all(np.isfinite(out)), name
            assert rel_err(out[None], X[t % 40][None]) < 1e-6, name
            t += 1
    st = pr.stats
    assert st["nonfinite_magnitude"] > 0 and st["nonfinite_mixture"] > 0 and st["negative_magnitude"] > 0
    assert st["frames"] == t + len(bad)


def test_single_stem_is_the_mixture():
    X, V = random_frames(20, 1, 2, 513)
    for mode in MODES:
        Y = PhaseRecovery(1, 2, 1024, 256, mode=mode).process_stft(X, V)
        assert np.allclose(Y[:, 0], X, rtol=0, atol=1e-6 * np.abs(X).max())


def test_zero_mixture_gives_silent_wiener_stems():
    X, V = random_frames(10, 4, 1, 513)
    Y = PhaseRecovery(4, 1, 1024, 256, mode="wiener").process_stft(np.zeros_like(X), V)
    assert np.all(Y == 0)


# -- API -----------------------------------------------------------------------------------------


def test_process_equals_process_stft_and_reset_reuses_cleanly():
    X, V = random_frames(30, 4, 2, 513, seed=4)
    pr = PhaseRecovery(4, 2, 1024, 256)
    whole = pr.process_stft(X, V).copy()
    again = pr.process_stft(X, V)  # reset=True by default: same result
    assert np.array_equal(whole, again)
    pr.reset()
    out = np.empty((4, 2, 513), np.complex64)
    frames = []
    for t in range(30):
        frames.append(pr.process(X[t], V[t], out).copy())
    assert np.array_equal(np.stack(frames), whole)
    # continuing a stream across calls == one call
    pr.reset()
    a = pr.process_stft(X[:13], V[:13], reset=True)
    b = pr.process_stft(X[13:], V[13:], reset=False)
    assert np.array_equal(np.concatenate([a, b]), whole)


def test_mode_can_change_between_frames():
    X, V = random_frames(30, 4, 2, 513, seed=5)
    pr = PhaseRecovery(4, 2, 1024, 256)
    out = np.empty((4, 2, 513), np.complex64)
    for t in range(30):
        pr.mode = MODES[t % 3]
        pr.n_iter = 1 + t % 7
        pr.kappa = 0.5 * (t % 5)
        pr.process(X[t], V[t], out)
        assert rel_err(out[None], X[t][None]) < 1e-6
    assert pr.mode == MODES[29 % 3] and pr.n_iter == 1 + 29 % 7


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 2.0, 4.0])
def test_wiener_mask_power_is_the_normalised_power_of_the_magnitudes(p):
    """wiener with mask power p: Y_j = V_j^p / sum_k V_k^p * X (1 and 2 are exact fast paths);
    a bin where every V is 0 is shared equally."""
    X, V = random_frames(8, 4, 2, 513, seed=7)
    V[:, :, :, 5] = 0.0
    Y = PhaseRecovery(4, 2, 1024, 256, mode="wiener", mask_power=p).process_stft(X, V)
    W = V.astype(np.float64) ** p
    tot = W.sum(axis=1, keepdims=True)
    lam = np.where(tot > 0, W / np.where(tot > 0, tot, 1), 0.25)
    ref = lam * X[:, None]
    assert np.abs(Y - ref).max() <= 2e-6 * np.abs(X).max()
    if p in (1.0, 2.0):  # the fast paths divide exactly as the formula does
        assert np.abs(Y - ref.astype(np.complex64)).max() <= 1e-6 * np.abs(X).max()


def test_mask_power_2_is_the_default_and_bit_identical():
    X, V = random_frames(12, 4, 2, 513, seed=8)
    for mode in MODES:
        a = PhaseRecovery(4, 2, 1024, 256, mode=mode).process_stft(X, V)
        b = PhaseRecovery(4, 2, 1024, 256, mode=mode, mask_power=2.0).process_stft(X, V)
        assert np.array_equal(a, b)


def test_mask_power_can_change_between_frames_and_bad_values_are_refused():
    X, V = random_frames(10, 4, 2, 513, seed=9)
    pr = PhaseRecovery(4, 2, 1024, 256, mode="wiener")
    assert pr.mask_power == 2.0 and pr.options["mask_power"] == 2.0
    out = np.empty((4, 2, 513), np.complex64)
    for t in range(10):
        pr.mask_power = 1.0 if t % 2 else 2.0
        pr.process(X[t], V[t], out)
        p = pr.mask_power
        assert np.allclose(out, (V[t] ** p / (V[t] ** p).sum(0)) * X[t], atol=1e-5)
    for bad in (0.1, 9.0, float("nan")):
        with pytest.raises(ValueError, match=r"mask_power must be a number in \[0.25, 8\]"):
            pr.mask_power = bad
        with pytest.raises(ValueError, match="mask_power must be a number"):
            PhaseRecovery(4, 2, 1024, 256, mask_power=bad)
    assert pr.mask_power == 1.0


def test_card_mask_power_per_mode_one_number_or_none():
    from livedemix.phase import card_mask_power

    assert card_mask_power({}, "wiener") == 2.0
    assert card_mask_power({"mask_power": {"wiener": 1}}, "wiener") == 1.0
    assert card_mask_power({"mask_power": {"wiener": 1}}, "pu-iter") == 2.0
    assert card_mask_power({"mask_power": 1.5}, "anisotropic") == 1.5
    for bad in ({"wiener": "soft"}, {"wiener": 0}, 12, True):
        with pytest.raises(ValueError, match="the model card's mask_power for wiener is .*: it must be a number"):
            card_mask_power({"mask_power": bad}, "wiener")


def test_defaults_and_repr():
    pr = PhaseRecovery(4, 2, 1024, 256)
    assert pr.mode == "pu-iter" and pr.n_iter == default_n_iter(256) == 32
    assert PhaseRecovery(4, 2, 512, 128).n_iter == default_n_iter(128) == 16  # the low-latency hop
    core = _core.PhaseRecovery(4, 2, 1024, 256)  # the C++ defaults for mode and kappa are the same
    assert (core.mode, core.kappa) == ("pu-iter", pr.kappa)
    assert (pr.n_stems, pr.channels, pr.n_fft, pr.hop, pr.bins) == (4, 2, 1024, 256, 513)
    assert "pu-iter" in repr(pr)
    assert pr.options["peak_db"] == -40.0


def test_bad_arrays_raise_value_error_naming_dtype_and_shape():
    core = _core.PhaseRecovery(4, 2, 1024, 256)
    X = np.zeros((2, 513), np.complex64)
    V = np.zeros((4, 2, 513), np.float32)
    out = np.zeros((4, 2, 513), np.complex64)
    with pytest.raises(ValueError, match=r"X must be a C-contiguous complex64 array of shape \(2, 513\).*complex128"):
        core.process(X.astype(np.complex128), V, out)
    with pytest.raises(
        ValueError, match=r"V must be a C-contiguous float32 array of shape \(4, 2, 513\).*\(3, 2, 513\)"
    ):
        core.process(X, V[:3], out)
    with pytest.raises(ValueError, match=r"out must be .*complex64 writable array"):
        core.process(X, V, out.astype(np.complex128))
    with pytest.raises(ValueError, match="non-contiguous"):
        core.process(np.zeros((513, 2), np.complex64).T, V, out)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        core.process(X, V, ro)
    with pytest.raises(ValueError, match=r"V must be .*\(3, 4, 2, 513\).*\(2, 4, 2, 513\)"):
        core.process_frames(
            np.zeros((3, 2, 513), np.complex64),
            np.zeros((2, 4, 2, 513), np.float32),
            np.zeros((3, 4, 2, 513), np.complex64),
        )
    pr = PhaseRecovery(4, 2, 1024, 256)
    with pytest.raises(ValueError, match="complex"):
        pr.process(np.zeros((2, 513)), V)
    with pytest.raises(ValueError, match="mode"):
        PhaseRecovery(4, 2, 1024, 256, mode="griffin-lim")
    with pytest.raises(ValueError, match="n_iter"):
        PhaseRecovery(4, 2, 1024, 256, n_iter=0)
    with pytest.raises(ValueError, match="kappa"):
        pr.kappa = -1.0
    with pytest.raises(ValueError, match="hop"):
        PhaseRecovery(4, 2, 1024, 0)
    with pytest.raises(ValueError, match="mode"):
        pr.mode = "nope"


def test_wrapper_converts_convenient_dtypes():
    X, V = random_frames(5, 2, 1, 513)
    pr = PhaseRecovery(2, 1, 1024, 256)
    a = pr.process_stft(X.astype(np.complex128), V.astype(np.float64))
    b = pr.process_stft(X, V)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("kappa", [0.0, 1e-3, 0.5, 1.0, 2.0, 8.0, 50.0, 600.0, 1999.0, 2001.0, 1e4])
def test_bessel_ratios_match_scipy(kappa):
    r1, r2 = _core.PhaseRecovery.bessel_ratios(kappa)
    if kappa == 0:
        assert (r1, r2) == (0.0, 0.0)
        return
    ive = lambda n: iv(n, kappa) if kappa < 600 else None  # noqa: E731
    if ive(0) is not None:
        assert r1 == pytest.approx(iv(1, kappa) / iv(0, kappa), rel=1e-10)
        assert r2 == pytest.approx(iv(2, kappa) / iv(0, kappa), rel=1e-10)
    else:
        from scipy.special import ive as ive_s

        assert r1 == pytest.approx(ive_s(1, kappa) / ive_s(0, kappa), rel=1e-10)
        assert r2 == pytest.approx(ive_s(2, kappa) / ive_s(0, kappa), rel=1e-10)


def test_gil_is_released_during_process_stft():
    """A thread that needs the interpreter lock keeps ticking while one long native call runs.
    The call is sized to take at least 300 ms on whatever machine runs the test (a held lock
    would give 0 ticks inside it); a ticker that sleeps 1 ms gets dozens on an idle machine and
    still a few on one loaded three times over."""
    import threading
    import time

    pr = PhaseRecovery(4, 2, 1024, 256, n_iter=64)
    X, V = random_frames(50, 4, 2, 513)
    t0 = time.perf_counter()
    pr.process_stft(X, V)
    per_frame = (time.perf_counter() - t0) / 50
    n = max(50, int(0.3 / per_frame) + 1)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    th = threading.Thread(target=ticker)
    th.start()
    time.sleep(0.01)
    for _ in range(4):  # the machine's speed varies: lengthen the call until it lasts 0.2 s
        X, V = random_frames(n, 4, 2, 513)
        t0 = time.perf_counter()
        pr.process_stft(X, V)
        t1 = time.perf_counter()
        if t1 - t0 >= 0.2:
            break
        n *= 2
    stop.set()
    th.join()
    inside = [t for t in ticks if t0 < t < t1]
    print(f"native call {1000 * (t1 - t0):.0f} ms, {len(inside)} ticks of the other thread inside it")
    assert t1 - t0 >= 0.2
    assert len(inside) >= 3, "the other thread stalled: process_stft holds the GIL"


# -- it actually recovers phase ------------------------------------------------------------------


def test_pu_iter_beats_wiener_with_oracle_magnitudes(real_song):
    """Oracle magnitudes on a short (4 s) song: default PU-Iter improves the mean plain SDR over
    Wiener. (The full claim, >= +1.5 dB BSS Eval SDR on 12 s songs, is the slow test in
    test_phase_quality.py and docs/EVALUATION.md.)"""
    refs, X, V = real_song
    n = refs.shape[-1]
    scores = {}
    for mode in ("wiener", "pu-iter", "anisotropic"):
        Y = PhaseRecovery(4, 2, 1024, 256, mode=mode).process_stft(X, V)
        est = istft(Y.transpose(1, 0, 2, 3).astype(np.complex128), 1024, 256, length=n)
        scores[mode] = np.mean([sdr(refs[j], est[j]) for j in range(4)])
    print(scores)
    assert scores["pu-iter"] > scores["wiener"] + 0.5
    assert scores["anisotropic"] > scores["wiener"]


@pytest.mark.parametrize(
    "n_fft,hop,window", [(1024, 256, "hann"), (1024, 128, "asymmetric"), (1024, 256, "asymmetric")]
)
def test_evaluation_stft_is_the_core_stft(n_fft, hop, window):
    """factory/phase_eval.py evaluates with a float64 NumPy twin of the core's STFT; it must be
    the same transform as livedemix.dsp.stft (same windows, same frame alignment)."""
    dsp = pytest.importorskip("livedemix.dsp")
    x = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    A = dsp.stft(x, dsp.StftConfig(n_fft=n_fft, hop=hop, window=window))
    from phase_support import stft as np_stft

    B = np_stft(x.astype(np.float64), n_fft, hop, window)
    T = min(len(A), len(B))
    assert T >= 8000 // hop
    assert np.abs(A[:T] - B[:T]).max() <= 1e-6 * np.abs(B).max()


@pytest.mark.parametrize("alias", ["pu_iter", "puiter", "aw", "Wiener", "PU-Iter"])
def test_undocumented_mode_aliases_are_refused_in_one_sentence(alias):
    """The modes go by their documented names only (phase.MODES); the aliases the core once
    took are refused by the wrapper, the native core, presets and the CLI alike."""
    from livedemix.presets import PresetError, parse_preset

    sentence = f"unknown phase recovery mode '{alias}'; use one of 'wiener', 'pu-iter', 'anisotropic'"
    for make in (
        lambda: PhaseRecovery(4, 2, 1024, 256, mode=alias),
        lambda: _core.PhaseRecovery(4, 2, 1024, 256, alias),
    ):
        with pytest.raises(ValueError) as e:
            make()
        assert str(e.value) == sentence
    pr = PhaseRecovery(4, 2, 1024, 256, mode="wiener")
    with pytest.raises(ValueError, match="unknown phase recovery mode"):
        pr.mode = alias
    with pytest.raises(ValueError, match="unknown phase recovery mode"):
        pr._impl.mode = alias
    assert pr.mode == "wiener"
    with pytest.raises(PresetError, match="engine.phase"):
        parse_preset({"schema": 1, "engine": {"phase": alias}})
