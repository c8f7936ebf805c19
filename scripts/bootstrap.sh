#!/usr/bin/env bash
# Sets up a Debian machine for livedemix, idempotently, in one of two sizes:
#   bootstrap.sh demo   what `livedemix demo` needs: the build tools and libraries, a virtual
#                       environment in .venv and the runtime (no torch)
#   bootstrap.sh test   (the default) everything: the test tools, the live-test servers, the LV2
#                       plugins the tests host, the factory (torch CPU) and the cluster extra
# A re-run with nothing changed costs seconds: Debian packages are checked with dpkg-query, and
# livedemix is rebuilt only when a file it is built from is newer than the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-test}
case "$MODE" in demo | test) ;; *) echo "usage: bootstrap.sh [demo|test]" >&2; exit 2 ;; esac

# Debian packages. To build and run the runtime: compilers and CMake, FFTW (the fast FFT
# backend), lilv and the LV2 headers (the plugin host), libsndfile and PortAudio (soundfile,
# sounddevice). For the tests as well: JACK (live-audio tests), fluidsynth with the FluidR3 GM
# soundfont (rendered test material and the training corpus), sox, espeak-ng, ffmpeg (decoding
# in the corpus loaders), the plugins the tests host: lv2-examples (eg-amp), mda-lv2
# (RezFilter, Ambience) and x42-plugins (nodelay: a plugin that reports its latency),
# clang-format (the C++ style check), and the sound libraries of the corpus's timbre pools
# (factory/corpus/timbres.py: GM soundfonts, avldrums' and Hydrogen's drum kits).
BUILD_DEBS=(build-essential cmake ninja-build pkg-config libfftw3-dev libsndfile1 libportaudio2 liblilv-dev lv2-dev)
DEBS=("${BUILD_DEBS[@]}" jackd2 fluidsynth fluid-soundfont-gm sox espeak-ng ffmpeg lv2-examples mda-lv2 x42-plugins
      clang-format csound-soundfont opl3-soundfont avldrums.lv2-soundfont timgm6mb-soundfont minuet-data denemo-data
      hydrogen-drumkits hydrogen-data)
[ "$MODE" = demo ] && DEBS=("${BUILD_DEBS[@]}")

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  # Another package manager (unattended-upgrades, a second shell) holding the dpkg lock is
  # waited for, with a message, instead of failing with apt's raw error.
  if command -v fuser >/dev/null && $SUDO fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock >/dev/null 2>&1; then
    echo "bootstrap: another package manager holds the dpkg lock; waiting for it (up to 10 minutes) ..."
  fi
  APT=($SUDO apt-get -o DPkg::Lock::Timeout=600 -q)
  echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections
  "${APT[@]}" update -qq
  "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
have() { .venv/bin/python -c "import $1" 2>/dev/null; }

# The build backend lives in the venv, so rebuilds are incremental (build/ is kept) and need
# no download.
have scikit_build_core && have pybind11 || pip_install --upgrade pip "scikit-build-core>=0.10" "pybind11>=2.12"

if [ "$MODE" = test ]; then
  # torch pinned to the CPU build this machine kind ships as a wheel file; an unpinned
  # requirement would let pip pick a newer release with several GB of CUDA packages.
  if ! have torch; then
    echo "bootstrap: installing torch (CPU) for the factory and its tests"
    pip_install "torch==2.13.0"
  fi
fi

# livedemix itself: (re)installed when a file it is built from changed since the last install
# (the stamp's time), or when the extras asked for grew. An editable install (a developer's
# `pip install -e .`) is kept editable.
extras=$([ "$MODE" = test ] && echo "[test,factory,cluster]" || echo "")
stamp=.venv/.livedemix-installed$extras
newer=$([ -f "$stamp" ] && find pyproject.toml CMakeLists.txt cpp python presets -newer "$stamp" -type f -print -quit || echo none)
if [ -n "$newer" ] || ! have livedemix._core; then
  echo "bootstrap: building and installing livedemix$extras into .venv"
  editable=()
  .venv/bin/python -m pip show livedemix 2>/dev/null | grep -q "^Editable project location" && editable=(-e)
  pip_install --no-build-isolation "${editable[@]}" ".$extras"
  touch "$stamp"
fi

if [ "$MODE" = test ]; then
  # The peers whose cost benchmarks/peers_cost.py measures (factory/peers.py): Open-Unmix's and
  # HT Demucs's networks. Both declare torchaudio, whose wheels pin one torch release each, and
  # their networks never call it, so they are installed without dependencies (plus what HT
  # Demucs's network does import). The check only finds the packages: importing demucs runs its
  # __init__, which imports torchaudio.
  if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ('openunmix', 'demucs', 'einops', 'julius')))"; then
    echo "bootstrap: installing the peer networks (openunmix, demucs) for the cost comparison"
    pip_install einops "julius>=0.2.3"
    pip_install --no-deps "openunmix==1.3.0" "demucs==4.1.0"
  fi
  have ruff || pip_install "ruff==0.17.6"
fi
