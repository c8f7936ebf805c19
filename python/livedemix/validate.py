"""Checks for untrusted data: presets, model cards, preset lists in MIDI maps, odd files.

Presets and model cards come from strangers (a download, a shared folder). They are parsed,
never executed, and every value in them is checked here before it reaches the engine or a
file name:

- names (stems, buses, shipped presets and models) are *identifiers*: a letter, then letters,
  digits, ``_`` or ``-``, at most 32 characters; no path separators, dots, spaces or control
  characters, and none of the reserved names (:data:`RESERVED_NAMES`, the Windows device names);
- files named by untrusted data are read with :func:`read_bounded`: regular files only (no
  FIFOs, devices or folders, which could hang or never end), at most a size limit, opened
  without blocking;
- paths named by untrusted data are confined (:func:`confined`): after resolving ``..`` and
  symlinks they must lie inside the folder they are relative to.

Every function raises the caller's error class (a :class:`~livedemix.errors.LivedemixError`)
with one sentence, so the preset, model and MIDI code can share them. Other modules (plugin
inserts, library jobs) should use the same helpers for the same kinds of input.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

from .errors import LivedemixError

IDENTIFIER_MAX = 32
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
# Names the offline renderer and the file system use themselves.
RESERVED_NAMES = frozenset(
    {"mix", "stem", "con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
MAX_PRESET_BYTES = 256 * 1024  # the biggest shipped preset is ~3 KB
MAX_CARD_BYTES = 1024 * 1024  # a card with its training history is ~10 KB
MAX_DEPTH = 16  # nesting of tables/arrays that any valid preset or card needs is < 8
MAX_TEXT = 4096  # characters in one string value


def short_repr(value, limit: int = 60) -> str:
    """repr() that is safe and short for anything a parser can return (a 5,000-digit integer's
    repr raises ValueError; a 1 MB string would flood the terminal)."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(str(abs(value))) if abs(value) < 10**limit else None
        if digits is None:
            return f"an integer of more than {limit} digits"
    try:
        r = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return r if len(r) <= limit else r[: limit - 1] + "…"


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_chars(text: str) -> bool:
    """True when text holds C0/C1 control characters (other than tab and newline) or Unicode
    bidirectional overrides: text that, printed to a terminal, could move the cursor, change
    the title or reorder what the user reads."""
    return any((ch < " " and ch not in "\t\n") or "\x7f" <= ch <= "\x9f" or ch in _BIDI for ch in text)


def identifier_problem(value, reserved: frozenset[str] | set[str] = RESERVED_NAMES) -> str | None:
    """Why ``value`` is not a usable name (None when it is)."""
    if not isinstance(value, str):
        return f"is {short_repr(value)}, not a string"
    if not value:
        return "is empty"
    if len(value) > IDENTIFIER_MAX:
        return f"is {len(value)} characters long (at most {IDENTIFIER_MAX})"
    if not _IDENT.match(value):
        return (
            f"is {short_repr(value)}: a name starts with a letter and holds only letters, digits, '_' and '-' "
            "(no paths, dots, spaces or ':')"
        )
    if value.lower() in reserved:
        return f"is {value!r}, a name reserved by livedemix"
    return None


def is_identifier(value, reserved=RESERVED_NAMES) -> bool:
    return identifier_problem(value, reserved) is None


def check_identifier(value, what: str, error: type[LivedemixError], reserved=RESERVED_NAMES) -> str:
    """``value`` if it is a usable name, else ``error`` naming ``what`` (e.g. "model card x.json: stem")."""
    problem = identifier_problem(value, reserved)
    if problem:
        raise error(f"{what} {problem}: use a plain name such as 'vocals' or 'cue'")
    return value


def depth_of(value, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of parsed data, counted up to ``limit + 1`` (iteratively: no recursion)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return deepest


def finite_number(value, *, integer: bool = False) -> bool:
    """A real number (not a bool), finite; an int when ``integer``."""
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and (isinstance(value, int) or math.isfinite(value))


def read_bounded(path: str | Path, limit: int, what: str, error: type[LivedemixError]) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    FIFOs, devices, sockets and folders are refused before anything is read (a FIFO would
    hang, /dev/zero never ends); the file is opened non-blocking and checked with fstat on the
    open descriptor, so swapping the name between the check and the read doesn't help; and the
    read stops at ``limit + 1`` bytes whatever the size claimed."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist: check the path") from None
    except OSError as e:
        raise error(f"{what} {path} can't be opened ({e.strerror or e}): check the path and its permissions") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a folder"
                if stat.S_ISDIR(st.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "not a regular file"
            )
            raise error(f"{what} {path} is {kind}: pass a regular file")
        if st.st_size > limit:
            raise error(f"{what} {path} is {st.st_size} bytes, more than the {limit} allowed: pass the right file")
        chunks, left = [], limit + 1
        while left > 0:
            try:
                b = os.read(fd, min(left, 1 << 16))
            except OSError as e:
                raise error(f"{what} {path} can't be read ({e.strerror or e}): check the file") from None
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > limit:
            raise error(f"{what} {path} is more than {limit} bytes: pass the right file")
        return data
    finally:
        os.close(fd)


def read_text_bounded(path: str | Path, limit: int, what: str, error: type[LivedemixError]) -> str:
    """:func:`read_bounded`, decoded as UTF-8 (a file in another encoding is one sentence)."""
    data = read_bounded(path, limit, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{what} {path} is not UTF-8 text (byte {e.start}): save it as UTF-8, or pass the right file"
        ) from None


def confined(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` (relative paths are taken relative to ``folder``), with every ``..``
    and symlink resolved, lies inside ``folder`` (also resolved)."""
    base = Path(folder).resolve()
    p = Path(path)
    target = (p if p.is_absolute() else base / p).resolve()
    return target == base or target.is_relative_to(base)


def safe_relative_name(value, what: str, error: type[LivedemixError], *, max_len: int = 255) -> str:
    """A relative file name from untrusted data: a non-empty string without NUL, not absolute,
    without ``..`` parts. (Confinement after symlinks is :func:`confined`'s job.)"""
    if not isinstance(value, str) or not value:
        raise error(f"{what} is {short_repr(value)}: give a file name (a string)")
    if len(value) > max_len or "\x00" in value:
        raise error(f"{what} is {short_repr(value)}: give a short plain file name")
    p = Path(value)
    if p.is_absolute() or ".." in p.parts or "\\" in value:
        raise error(f"{what} is {short_repr(value)}: it must name a file in the same folder, not a path")
    return value
