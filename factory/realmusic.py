"""Real recordings as factory material: folders of released songs (full mixes, instrumentals,
isolated parts), each with its source and licence, split by song into train / valid.

Collections it reads:

- ``sung``: one folder per song (``audio.*`` = the full mix with vocals, ``instrumental.*`` =
  the song without its lead vocals where the author released one) and the song's
  ``license.txt`` (the 17 Creative Commons songs in ``../shared/realmusic/sung``);
- Debian game-music packages, unpacked by ``fetch-debian`` into a cache folder outside the
  repository (``DEST/<package>/...`` plus ``DEST/<package>/MANIFEST.json`` with the package's
  licence): every audio file of a music package is one instrumental "song"; every Frets on Fire
  song folder is one song with ``song.ogg`` (the band without the lead guitar, called
  ``backing``), ``guitar.ogg`` and sometimes ``rhythm.ogg``.

The split is by song and deterministic: a song is in ``valid`` when the SHA-256 of its key (the
song's folder name; ``<package>/<file>`` for game music) falls in the first ``VALID_FRACTION``
of the hash range, so adding songs never moves old ones; NoDerivatives songs are always in
``valid`` (they are only listened to, never remixed into training material).

    python -m factory.realmusic list [--sung DIR] [--debian DIR]
    python -m factory.realmusic fetch-debian DEST [--packages a,b,...]

No audio is ever written inside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SR = 44100
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SUNG = ROOT.parent / "shared" / "realmusic" / "sung"
DEFAULT_DEBIAN = ROOT.parent / "data" / "realmusic"
VALID_FRACTION = 0.25
AUDIO_EXTS = (".mp3", ".ogg", ".oga", ".flac", ".wav", ".opus", ".m4a", ".aif", ".aiff")

# The Debian packages of real music named in ../shared/realmusic/README.md: the licence as the
# package's copyright file gives it (fetch-debian also copies that file's License: lines), and
# how its files are read ("music": each file an instrumental song; "fretsonfire": song folders).
DEBIAN_PACKAGES = {
    "warzone2100-music": ("CC BY-SA 3.0", "music"),
    "nexuiz-music": ("GPL-2", "music"),
    "singularity-music": ("CC BY-SA", "music"),
    "drascula-music": ("Drascula-License (BSD-like)", "music"),
    "wesnoth-1.16-music": ("GPL-2+", "music"),
    "asc-music": ("see copyright", "music"),
    "fb-music-high": ("see copyright", "music"),
    "ufoai-music": ("see copyright", "music"),
    "fretsonfire-songs-muldjord": ("CC BY-SA 3.0", "fretsonfire"),
    "fretsonfire-songs-sectoid": ("GPL", "fretsonfire"),
}
# A bounded default for fetch-debian: the guitar stems and two mostly-instrumental packages
# (~1.5 h), enough for validation instrumentals; name others with --packages.
DEFAULT_FETCH = ("fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid", "singularity-music", "drascula-music")

_CC = re.compile(r"creativecommons\.org/licenses/([a-z-]+)/(\d(?:\.\d)?)", re.I)
_ROLE_BY_STEM = {
    "audio": "mixture",
    "mixture": "mixture",
    "instrumental": "instrumental",
    "song": "backing",
    "guitar": "guitar",
    "rhythm": "rhythm",
}


class RealMusicError(RuntimeError):
    """Real recordings cannot be read or fetched; the message says what to do."""


@dataclass
class Song:
    key: str  # what the split hashes: the song's folder name, or <package>/<file> for game music
    collection: str  # "sung", or the Debian package
    files: dict = field(default_factory=dict)  # role -> [Path]; roles: mixture, instrumental, backing, guitar, rhythm
    licence: str = "unknown"
    licence_url: str = ""
    source: str = ""

    @property
    def no_derivatives(self) -> bool:
        return "-nd" in self.licence.lower().replace(" ", "-") or "nd-" in self.licence.lower()

    @property
    def split(self) -> str:
        return split_of(self.key, self.no_derivatives)

    @property
    def has_vocals(self) -> bool:
        return "mixture" in self.files

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "collection": self.collection,
            "split": self.split,
            "licence": self.licence,
            "licence_url": self.licence_url,
            "source": self.source,
            "files": {r: [str(p) for p in ps] for r, ps in sorted(self.files.items())},
        }


def split_of(key: str, no_derivatives: bool = False, valid_fraction: float = VALID_FRACTION) -> str:
    """'valid' or 'train' for a song key: a hash of the key alone, so adding songs never moves
    old ones; NoDerivatives songs are always 'valid'."""
    if no_derivatives:
        return "valid"
    h = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "valid" if h < valid_fraction else "train"


def parse_licence(text: str) -> tuple[str, str]:
    """The first Creative Commons licence URL in a licence file (the audio's: UltraStar licence
    files list the audio first): ('CC BY-NC-ND 2.5', url), or ('unknown', '')."""
    m = _CC.search(text)
    if not m:
        return "unknown", ""
    kind, version = m.group(1).lower(), m.group(2)
    return f"CC {kind.upper()} {version}", f"https://creativecommons.org/licenses/{kind}/{version}/"


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTS)


def scan_sung(root=DEFAULT_SUNG) -> list[Song]:
    """Folders of songs: <song>/{audio,instrumental}.<ext> and <song>/license.txt."""
    root = Path(root)
    if not root.is_dir():
        raise RealMusicError(f"{root} is not a folder of songs; pass --sung DIR (one sub-folder per song).")
    songs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files: dict = {}
        for f in _audio_files(d):
            role = _ROLE_BY_STEM.get(f.stem.lower(), "mixture")
            files.setdefault(role, []).append(f)
        if not files:
            continue
        lic = d / "license.txt"
        licence, url = parse_licence(lic.read_text(errors="replace")) if lic.exists() else ("unknown", "")
        songs.append(Song(d.name, "sung", files, licence, url, source=str(d)))
    return songs


def _manifest(pkg_dir: Path) -> dict:
    m = pkg_dir / "MANIFEST.json"
    if m.exists():
        return json.loads(m.read_text())
    lic, kind = DEBIAN_PACKAGES.get(pkg_dir.name, ("unknown", "music"))
    return {"package": pkg_dir.name, "licence": lic, "kind": kind}


def scan_debian(root=DEFAULT_DEBIAN) -> list[Song]:
    """Packages unpacked by ``fetch-debian`` under ``root``: <package>/MANIFEST.json + files."""
    root = Path(root)
    if not root.is_dir():
        return []
    songs = []
    for pkg_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        man = _manifest(pkg_dir)
        lic, pkg = man.get("licence", "unknown"), man.get("package", pkg_dir.name)
        src = f"Debian package {pkg} {man.get('version', '')}".strip()
        if man.get("kind") == "fretsonfire":
            for ini in sorted(pkg_dir.glob("**/song.ini")):
                d = ini.parent
                files = {}
                for f in _audio_files(d):
                    role = _ROLE_BY_STEM.get(f.stem.lower())
                    if role in ("backing", "guitar", "rhythm"):
                        files.setdefault(role, []).append(f)
                if "backing" in files:
                    songs.append(Song(f"{pkg}/{d.name}", pkg, files, lic, "", src))
        else:
            seen = set()  # a package may ship one track several times (drascula: once per language)
            for f in sorted(p for p in pkg_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS):
                key = f"{pkg}/{f.stem}"
                if key not in seen:
                    seen.add(key)
                    songs.append(Song(key, pkg, {"instrumental": [f]}, lic, "", src))
    return songs


def scan(sung=DEFAULT_SUNG, debian=DEFAULT_DEBIAN) -> list[Song]:
    """Every song of both kinds of collection (a missing Debian cache is just empty)."""
    out = []
    if sung is not None:
        out += scan_sung(sung)
    if debian is not None:
        out += scan_debian(debian)
    return out


def decode(path, sr: int = SR) -> np.ndarray:
    """(2, n) float32 at ``sr``: libsndfile (wav, flac, ogg, mp3), else ffmpeg."""
    path = Path(path)
    try:
        from factory.corpus.datasets import read_audio

        return read_audio(path, sr=sr)
    except Exception:  # noqa: BLE001 - any libsndfile failure falls back to ffmpeg
        pass
    if shutil.which("ffmpeg") is None:
        raise RealMusicError(f"cannot decode {path}: libsndfile refuses it; install the Debian package `ffmpeg`.")
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2", "-ar", str(sr), "-"]
    r = subprocess.run(cmd, capture_output=True, check=False)
    if r.returncode != 0:
        raise RealMusicError(f"cannot decode {path}: {r.stderr.decode(errors='replace').strip()[:200]}")
    return np.ascontiguousarray(np.frombuffer(r.stdout, np.float32).reshape(-1, 2).T)


def duration_s(path) -> float:
    try:
        import soundfile as sf

        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001
        return decode(path).shape[1] / SR


# ----------------------------------------------------------------------------- Debian fetch


def _copyright_licences(pkg_root: Path, package: str) -> list[str]:
    f = pkg_root / "usr" / "share" / "doc" / package / "copyright"
    if not f.exists():
        return []
    lines = [
        ln.split(":", 1)[1].strip() for ln in f.read_text(errors="replace").splitlines() if ln.startswith("License:")
    ]
    return sorted(set(x for x in lines if x))


def fetch_debian(dest, packages=DEFAULT_FETCH, progress=print) -> list[dict]:
    """``apt-get download`` each package and unpack it (``dpkg-deb -x``) into ``dest/<package>``
    with a MANIFEST.json (package, version, licence, the copyright file's License: lines, kind).
    Music inside zip archives (nexuiz's .pk3) is unpacked beside them. Done packages are kept."""
    dest = Path(dest).resolve()
    if ROOT in (dest, *dest.parents):
        raise RealMusicError(f"{dest} is inside the repository; fetch real music into a folder outside it.")
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RealMusicError(f"`{tool}` is not installed: fetch-debian needs a Debian system.")
    unknown = [p for p in packages if p not in DEBIAN_PACKAGES]
    if unknown:
        raise RealMusicError(f"unknown package {', '.join(unknown)}; choose from {', '.join(DEBIAN_PACKAGES)}.")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for pkg in packages:
        final = dest / pkg
        if (final / "MANIFEST.json").exists():
            out.append(json.loads((final / "MANIFEST.json").read_text()))
            continue
        with tempfile.TemporaryDirectory(dir=dest, prefix=f".{pkg}-") as tmp:
            tmp = Path(tmp)
            progress(f"fetching {pkg} ...")
            r = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True, check=False)
            debs = sorted(tmp.glob(f"{pkg}_*.deb"))
            if r.returncode != 0 or not debs:
                raise RealMusicError(
                    f"`apt-get download {pkg}` failed ({r.stderr.strip()[:160]}); run `apt-get update` first."
                )
            version = debs[0].name.split("_")[1]
            unpacked = tmp / "root"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
            for pk3 in list(unpacked.rglob("*.pk3")) + list(unpacked.rglob("*.zip")):
                with zipfile.ZipFile(pk3) as z:
                    for n in z.namelist():
                        if n.lower().endswith(AUDIO_EXTS) and ".." not in n and not n.startswith("/"):
                            z.extract(n, pk3.parent / (pk3.stem + "_unzipped"))
                pk3.unlink()
            lic, kind = DEBIAN_PACKAGES[pkg]
            copyright_lics = _copyright_licences(unpacked, pkg)
            man = {
                "package": pkg,
                "version": version,
                "licence": lic if lic != "see copyright" else (" / ".join(copyright_lics) or "unknown"),
                "copyright_licences": copyright_lics,
                "kind": kind,
                "source": f"apt-get download {pkg}={version}",
            }
            (unpacked / "MANIFEST.json").write_text(json.dumps(man, indent=1) + "\n")
            os.replace(unpacked, final)
        out.append(man)
    return out


# ----------------------------------------------------------------------------- CLI


def _table(songs: list[Song]) -> str:
    rows = ["| song | collection | split | licence | files (s) |", "| --- | --- | --- | --- | --- |"]
    for s in songs:
        files = ", ".join(f"{r} {duration_s(p):.0f}" for r, ps in sorted(s.files.items()) for p in ps)
        rows.append(f"| {s.key} | {s.collection} | {s.split} | {s.licence} | {files} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m factory.realmusic", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="every real song with its split, licence and files (a Markdown table)")
    ls.add_argument("--sung", type=Path, default=DEFAULT_SUNG)
    ls.add_argument("--debian", type=Path, default=DEFAULT_DEBIAN)
    ls.add_argument("--json", action="store_true", help="one JSON object per song instead of the table")
    fd = sub.add_parser("fetch-debian", help="apt-get download + dpkg-deb -x the real-music packages into DEST")
    fd.add_argument("dest", type=Path)
    fd.add_argument("--packages", default=",".join(DEFAULT_FETCH), help="comma-separated (default %(default)s)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            songs = scan(args.sung, args.debian)
            if args.json:
                for s in songs:
                    print(json.dumps(s.to_dict()))
            else:
                print(_table(songs))
                n = {sp: sum(s.split == sp for s in songs) for sp in ("train", "valid")}
                print(f"\n{len(songs)} songs: {n['train']} train, {n['valid']} valid")
        else:
            for m in fetch_debian(args.dest, [p for p in args.packages.split(",") if p]):
                print(f"{m['package']} {m['version']}: {m['licence']} ({m['kind']})")
    except RealMusicError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
