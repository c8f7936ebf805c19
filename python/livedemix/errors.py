"""The package's error types. Every error a user can cause (a bad file, preset, model card,
device, MIDI port or plugin) derives from :class:`LivedemixError`, so one ``except`` catches
them all; each message is one sentence that names the thing and the fix. They are also
``ValueError`` for the callers that caught that before the base class existed."""


class LivedemixError(ValueError):
    """Base class of every livedemix error."""


class EngineError(LivedemixError):
    """An engine call with arguments the engine can't take (a block of the wrong shape or type,
    an unknown stem or bus, a non-finite gain)."""
