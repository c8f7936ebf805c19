#!/usr/bin/env bash
# Every test: the C++ tests (ctest) with both FFT backends, then pytest against the installed
# package. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

PYBIND11_DIR=$(.venv/bin/python -m pybind11 --cmakedir 2>/dev/null || true)
for fft in fftw builtin; do
  echo "== C++ tests, FFT backend: $fft"
  cmake -S . -B "build/ctest-$fft" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIVEDEMIX_BUILD_PYTHON=OFF \
        -DLIVEDEMIX_FFT="$fft" >/dev/null
  cmake --build "build/ctest-$fft" -j2 >/dev/null
  (cd "build/ctest-$fft" && ctest --output-on-failure)
done

# Run from the tests' own directory layout against the installed package (not python/).
# The live tests (real JACK servers, PortAudio, JACK MIDI) run in a process of their own:
# libjack and PortAudio keep per-process state (registries, host API handles) that should
# not depend on which tests ran before.
LIVE=(tests/test_live_audio.py tests/test_live_units.py tests/test_midi.py tests/test_tui.py)
if [ $# -gt 0 ]; then
  echo "== pytest $*"
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
ignore=()
for f in "${LIVE[@]}"; do ignore+=(--ignore="$f"); done
echo "== pytest (everything but the live tests)"
.venv/bin/python -m pytest -q -p no:cacheprovider "${ignore[@]}"
echo "== pytest (live: JACK, PortAudio, MIDI)"
.venv/bin/python -m pytest -q -p no:cacheprovider "${LIVE[@]}"
