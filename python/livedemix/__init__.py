"""livedemix: real-time music demixing.

Split a stereo mix into stems (vocals, drums, bass, other) while it plays, and mute, solo,
rebalance, route and add effects to them live. The DSP core is native (``livedemix._core``).

    import livedemix
    stems = livedemix.separate(audio, 44100)                 # {stem: (channels, samples)}
    eng = livedemix.Engine(preset="karaoke", block_size=256)  # one call per audio block
    out = eng.process(block)                                  # (buses, channels, n)
    with livedemix.LiveStream(eng, device="Scarlett"):        # the same engine on a device
        ...

The names below are imported lazily, so ``import livedemix`` stays fast (no onnxruntime,
no sounddevice until they are used).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: The stem names of the shipped models (the MUSDB18 convention); a model card may name others.
STEMS = ("vocals", "drums", "bass", "other")

_LAZY = {
    "Engine": ".engine",
    "separate": ".offline",
    "Preset": ".presets",
    "load_preset": ".presets",
    "LiveStream": ".live",
    "LivedemixError": ".errors",
}

__all__ = ["STEMS", "__version__", *_LAZY]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .engine import Engine as Engine
    from .errors import LivedemixError as LivedemixError
    from .live import LiveStream as LiveStream
    from .offline import separate as separate
    from .presets import Preset as Preset
    from .presets import load_preset as load_preset


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'livedemix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
