"""Causal phase recovery: give each separated stem a phase and make the stems sum to the mix.

A magnitude-only separator estimates, for every STFT frame, the magnitude ``V[j, c, f]`` of
each stem ``j``. :class:`PhaseRecovery` turns those magnitudes and the mixture frame
``X[c, f]`` into complex stem frames ``out[j, c, f]``, one frame at a time and using only the
past, with ``out.sum(axis=0) == X`` (to float rounding) in every mode. The work happens in the
native core (``livedemix._core``), allocation-free, with the GIL released.

Modes (switchable between frames):

``"wiener"``
    the soft mask ``V_j**p / sum_k V_k**p`` applied to the mixture: every stem has the
    mixture's phase. With ``p = mask_power = 2``, the classical Wiener filter; a model's
    estimated magnitudes are often better served by ``p = 1`` (a magnitude ratio mask), which
    is why a model card carries the power calibrated for it (``factory.calibrate``).
``"pu-iter"`` (default)
    phase unwrapping (Magron et al. 2015, 2018): spectral peaks of ``V_j`` are refined by
    quadratic interpolation of the log magnitude, every bin takes the frequency of the peak
    whose region of influence it lies in (Laroche & Dolson 1999), and its phase is advanced
    from the previous output frame by ``2*pi*hop*nu``; at an onset of the stem (a causal
    spectral-flux detector) and at the first frame the stem takes the mixture's phase. Then
    ``n_iter`` mixture-consistency iterations distribute the residual ``X - sum_j S_j`` by the
    weights ``V_j**p / sum_k V_k**p`` while keeping the magnitudes ``V_j``; the last iteration's
    residual-corrected estimates are returned, so the stems sum to the mixture.
``"anisotropic"``
    the anisotropic Wiener filter (Magron et al., ICASSP 2017): the posterior mean of each
    stem under a von Mises prior on its phase centred on the unwrapped phase, with
    concentration ``kappa`` (``kappa=0`` is the ordinary Wiener filter).

Arrays: ``X`` complex (channels, bins), ``V`` real (stems, channels, bins) with
``bins = n_fft // 2 + 1``, in the STFT convention of the core (frame ``t`` is the rfft of the
windowed samples ``[(t+1)*hop - n_fft, (t+1)*hop)``, no circular shift). For real-time use,
pass complex64/float32 C-contiguous arrays and a preallocated ``out``: nothing is then
copied or converted (the native call itself allocates nothing and releases the GIL).

Also: :meth:`PhaseRecovery.unwrap_stft`, phase unwrapping alone (not mixture-consistent), for
phase-retrieval experiments (``python -m factory.phase_eval retrieval``).
"""

from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["PhaseRecovery", "MODES", "default_n_iter", "DEFAULT_KAPPA", "DEFAULT_MASK_POWER", "card_mask_power"]

#: The reconstruction modes, by the only names they go by (presets, the CLI, model cards, the
#: factory and the native core all take these and nothing else).
MODES = ("wiener", "pu-iter", "anisotropic")


def default_n_iter(hop: int) -> int:
    """PU-Iter mixture-consistency iterations per frame for an STFT hop: 32 at hop >= 256 (+2.3 dB
    SDR over Wiener with oracle magnitudes, about 85 µs per frame for 4 stereo stems), 16 at
    shorter hops, where consecutive frames overlap more (docs/EVALUATION.md). The one default:
    the engine, the factory and :class:`PhaseRecovery` all use it."""
    return 32 if hop >= 256 else 16


#: Von Mises concentration of the anisotropic mode (the best of 0.5/1/2/4 in the same test).
DEFAULT_KAPPA = 2.0
#: Exponent of the weights by which every mode shares the mixture among the stems (2: Wiener).
DEFAULT_MASK_POWER = 2.0


def card_mask_power(card: dict, mode: str) -> float:
    """The mask power a model card calibrated for ``mode`` (``"mask_power": {mode: p}``, written
    by ``python -m factory.calibrate``, or one number for every mode); 2 (Wiener) for a card or
    mode without one. A value that is not a number in [0.25, 8] raises ValueError."""
    value = card.get("mask_power")
    if isinstance(value, dict):
        value = value.get(mode)
    if value is None:
        return DEFAULT_MASK_POWER
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.25 <= value <= 8:
        raise ValueError(
            f"the model card's mask_power for {mode} is {value!r}: it must be a number from 0.25 to 8 "
            "(run python -m factory.calibrate --write on the card, or remove the key)"
        )
    return float(value)


def _check_mode(mode) -> None:
    if mode not in MODES:
        # the same sentence as the native core's
        raise ValueError(f"unknown phase recovery mode {mode!r}; use one of " + ", ".join(f"'{m}'" for m in MODES))


def _as(a, dtype, name: str, kind: str) -> np.ndarray:
    arr = np.asarray(a)
    if kind == "complex" and not np.iscomplexobj(arr):
        raise ValueError(f"{name} must be a complex array (the mixture STFT); got dtype {arr.dtype}")
    if kind == "real" and (np.iscomplexobj(arr) or arr.dtype.kind not in "fiu"):
        raise ValueError(f"{name} must be a real array of magnitudes; got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


class PhaseRecovery:
    """Frame-recursive phase recovery and mixture-consistent stem reconstruction.

    Parameters
    ----------
    n_stems, channels : int
        Number of stems ``J`` and of audio channels ``C``.
    n_fft, hop : int
        Analysis frame length and hop of the STFT the frames come from (the phase advance
        uses ``hop``; for the asymmetric low-latency STFT pass its analysis ``n_fft``).
    mode : {"wiener", "pu-iter", "anisotropic"}
    n_iter : int, optional
        Mixture-consistency iterations per frame for ``"pu-iter"`` (>= 1); default
        :func:`default_n_iter` of ``hop``.
    kappa : float
        Von Mises concentration for ``"anisotropic"`` (>= 0).
    mask_power : float
        Exponent ``p`` of the weights ``V_j**p / sum_k V_k**p`` that every mode shares the
        mixture by, in [0.25, 8]; 2 is Wiener, 1 a magnitude ratio mask.
    peak_db : float
        Peaks must exceed this level (dB) relative to the frame's maximum magnitude.
    onset_floor, onset_ratio, onset_smoothing : float
        Onset detector: with the normalised flux
        ``d(t) = sum_f max(0, V(t) - V(t-1)) / sum_f V(t)`` (in [0, 1]), an onset is
        ``d(t) > onset_floor and d(t) > onset_ratio * mean_past(d)``, where ``mean_past`` is an
        exponential average of past frames with coefficient ``onset_smoothing``.

    Examples
    --------
    >>> pr = PhaseRecovery(n_stems=4, channels=2, n_fft=1024, hop=256)
    >>> out = np.zeros((4, 2, 513), np.complex64)
    >>> for X_t, V_t in frames:            # doctest: +SKIP
    ...     pr.process(X_t, V_t, out)       # out[j] is stem j's STFT frame
    >>> stems = pr.process_stft(X, V)       # whole STFT: X (T, C, F), V (T, J, C, F)
    """

    def __init__(
        self,
        n_stems: int,
        channels: int,
        n_fft: int,
        hop: int,
        mode: str = "pu-iter",
        n_iter: int | None = None,
        kappa: float = DEFAULT_KAPPA,
        peak_db: float = -40.0,
        onset_floor: float = 0.2,
        onset_ratio: float = 2.0,
        onset_smoothing: float = 0.1,
        mask_power: float = DEFAULT_MASK_POWER,
    ):
        _check_mode(mode)
        self._impl = _core.PhaseRecovery(
            int(n_stems),
            int(channels),
            int(n_fft),
            int(hop),
            str(mode),
            int(default_n_iter(int(hop)) if n_iter is None else n_iter),
            float(kappa),
            float(peak_db),
            float(onset_floor),
            float(onset_ratio),
            float(onset_smoothing),
            float(mask_power),
        )

    # -- configuration ------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """Current mode; assignable between frames."""
        return self._impl.mode

    @mode.setter
    def mode(self, value: str) -> None:
        _check_mode(value)
        self._impl.mode = str(value)

    @property
    def n_iter(self) -> int:
        """PU-Iter iterations per frame; assignable between frames."""
        return self._impl.n_iter

    @n_iter.setter
    def n_iter(self, value: int) -> None:
        self._impl.n_iter = int(value)

    @property
    def kappa(self) -> float:
        """Von Mises concentration of the anisotropic mode; assignable between frames."""
        return self._impl.kappa

    @kappa.setter
    def kappa(self, value: float) -> None:
        self._impl.kappa = float(value)

    @property
    def mask_power(self) -> float:
        """Exponent of the stems' weights (2 = Wiener); assignable between frames."""
        return self._impl.mask_power

    @mask_power.setter
    def mask_power(self, value: float) -> None:
        self._impl.mask_power = float(value)

    n_stems = property(lambda self: self._impl.n_stems, doc="Number of stems J.")
    channels = property(lambda self: self._impl.channels, doc="Number of channels C.")
    n_fft = property(lambda self: self._impl.n_fft, doc="Analysis frame length.")
    hop = property(lambda self: self._impl.hop, doc="Hop size in samples.")
    bins = property(lambda self: self._impl.bins, doc="Frequency bins F = n_fft // 2 + 1.")

    @property
    def stats(self) -> dict:
        """Counters since the last reset: frames, non-finite / negative inputs replaced, onsets."""
        return self._impl.stats

    @property
    def options(self) -> dict:
        return self._impl.options

    # -- processing ---------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the past: the next frame is treated as a first frame (mixture phase)."""
        self._impl.reset()

    def process(self, X, V, out: np.ndarray | None = None) -> np.ndarray:
        """Process one frame.

        ``X``: complex (C, F) mixture frame; ``V``: real (J, C, F) stem magnitudes.
        Returns ``out``, complex64 (J, C, F), written in place if given (it must then be a
        C-contiguous complex64 array of that shape). NaN/Inf inputs are replaced by 0 and
        counted in :attr:`stats`.
        """
        X = _as(X, np.complex64, "X", "complex")
        V = _as(V, np.float32, "V", "real")
        if out is None:
            out = np.empty((self.n_stems, self.channels, self.bins), np.complex64)
        return self._impl.process(X, V, out)

    def process_stft(self, X, V, out: np.ndarray | None = None, reset: bool = True) -> np.ndarray:
        """Process a whole STFT, frame by frame in C++ (the same result as calling
        :meth:`process` on each frame in order).

        ``X``: complex (T, C, F); ``V``: real (T, J, C, F). Returns complex64 (T, J, C, F).
        With ``reset=True`` (default) the state is cleared first; pass ``reset=False`` to
        continue a stream (as in pedalboard).
        """
        X = _as(X, np.complex64, "X", "complex")
        V = _as(V, np.float32, "V", "real")
        if X.ndim != 3:
            raise ValueError(f"X must have shape (frames, channels, bins); got shape {X.shape}")
        if out is None:
            out = np.empty((X.shape[0], self.n_stems, self.channels, self.bins), np.complex64)
        if reset:
            self.reset()
        return self._impl.process_frames(X, V, out)

    def unwrap_stft(self, X, V, out: np.ndarray | None = None, reset: bool = True) -> np.ndarray:
        """Phase unwrapping alone, for phase retrieval and analysis: ``out_j = V_j e^{i phi_j}``.

        Not mixture-consistent (whatever :attr:`mode` is): ``X`` (T, C, F) only supplies the
        phase taken at onsets and at the first frame (pass the true STFT there for a phase
        retrieval experiment). ``V``: (T, J, C, F). Returns complex64 (T, J, C, F).
        """
        X = _as(X, np.complex64, "X", "complex")
        V = _as(V, np.float32, "V", "real")
        if X.ndim != 3:
            raise ValueError(f"X must have shape (frames, channels, bins); got shape {X.shape}")
        if out is None:
            out = np.empty((X.shape[0], self.n_stems, self.channels, self.bins), np.complex64)
        if reset:
            self.reset()
        return self._impl.unwrap_frames(X, V, out)

    def __repr__(self) -> str:
        return (
            f"PhaseRecovery(n_stems={self.n_stems}, channels={self.channels}, n_fft={self.n_fft}, "
            f"hop={self.hop}, mode={self.mode!r}, n_iter={self.n_iter}, kappa={self.kappa:g})"
        )
