#!/usr/bin/env bash
# Sets up a fresh Debian machine for livedemix, idempotently: the Debian packages it needs,
# a virtual environment in .venv, and livedemix built and installed into it with its test
# extra. Every later step (demo, tests, CI) starts by running this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: compilers and CMake for the native core, FFTW (the fast FFT backend),
# libsndfile/PortAudio for soundfile/sounddevice, JACK for live-audio tests, fluidsynth with the
# FluidR3 GM soundfont (rendered test material and the training corpus), sox and espeak-ng,
# ffmpeg (MUSDB18 .stem.mp4 decoding in the corpus loaders).
DEBS=(build-essential cmake ninja-build pkg-config libfftw3-dev libsndfile1 libportaudio2 jackd2
      fluidsynth fluid-soundfont-gm sox espeak-ng ffmpeg)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
# pip's output goes to a log (this machine's pip config prints a warning per missing local
# index); it is shown only when an install fails.
pip_install() {
  if ! .venv/bin/python -m pip install -q "$@" > .venv/pip.log 2>&1; then
    grep -v "is ignored: it is neither" .venv/pip.log | tail -40
    echo "bootstrap: pip install $* failed (log above)" >&2
    exit 1
  fi
}
pip_install --upgrade pip
# torch pinned to the CPU build this machine kind ships as a wheel file; an unpinned
# requirement would let pip pick a newer release with several GB of CUDA packages.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "bootstrap: installing torch (CPU) for the training factory and its tests"
  pip_install "torch==2.13.0"
fi
echo "bootstrap: building and installing livedemix into .venv"
pip_install ".[test,train,corpus]"
# The peers that the separator is trained and benchmarked against (factory/peers.py):
# Open-Unmix's and HT Demucs's networks. Both declare torchaudio, whose wheels pin one torch
# release each, and their networks never call it, so they are installed without dependencies
# (plus what HT Demucs's network does import).
if ! .venv/bin/python -c "import openunmix, demucs, einops, julius" 2>/dev/null; then
  echo "bootstrap: installing the peer networks (openunmix, demucs) for the comparisons"
  pip_install einops "julius>=0.2.3"
  pip_install --no-deps "openunmix==1.3.0" "demucs==4.1.0"
fi
