#!/usr/bin/env bash
# Every test, as CI runs it: the style checks, the C++ tests (ctest) with both FFT backends, then
# pytest against the installed package, tier by tier, and the fuzz suite's summary. Exits
# non-zero on any failure. `scripts/test.sh ARGS` runs just `pytest ARGS` after the set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider --durations=8)

if [ $# -gt 0 ]; then
  echo "== pytest $*"
  exec "${PYTEST[@]}" "$@"
fi

echo "== style: ruff (lint, format) and clang-format"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
clang-format --dry-run -Werror cpp/*.cpp cpp/core/*.cpp cpp/core/*.hpp tests/cpp/*.cpp tests/cpp/*.hpp

PYBIND11_DIR=$(.venv/bin/python -m pybind11 --cmakedir 2>/dev/null || true)
for fft in fftw builtin; do
  echo "== C++ tests, FFT backend: $fft"
  cmake -S . -B "build/ctest-$fft" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLIVEDEMIX_BUILD_PYTHON=OFF \
        -DLIVEDEMIX_FFT="$fft" >/dev/null
  cmake --build "build/ctest-$fft" -j2 >/dev/null
  (cd "build/ctest-$fft" && ctest --output-on-failure)
done

# pytest runs from the repository root against the installed package (python/ is not on the
# path; the factory and the tests' helpers are, through pytest's pythonpath setting).
echo "== pytest: the fast runtime tier (the default \`pytest\`)"
"${PYTEST[@]}"
echo "== pytest: the factory and slow tiers"
"${PYTEST[@]}" -m "(factory or slow) and not live"
# The live tests (real JACK servers, PortAudio, JACK MIDI) run in a process of their own:
# libjack and PortAudio keep per-process state that should not depend on which tests ran before.
echo "== pytest: the live tier (JACK, PortAudio, MIDI)"
"${PYTEST[@]}" -m live
if [ -f tests/fuzz/__main__.py ]; then
  echo "== fuzz: presets, model cards, audio files, engine controls"
  .venv/bin/python -m tests.fuzz --seconds "${LIVEDEMIX_FUZZ_SECONDS:-120}"
fi
