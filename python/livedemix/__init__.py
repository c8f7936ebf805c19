"""livedemix: real-time music demixing.

Split a stereo mix into stems (vocals, drums, bass, other) while it plays, and mute, solo,
rebalance and route them live. The DSP core is native (``livedemix._core``); ``livedemix.dsp``
is its documented Python surface.
"""

__version__ = "0.1.0"

STEMS = ("vocals", "drums", "bass", "other")
