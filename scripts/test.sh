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

echo "== pytest"
# Run from the tests' own directory layout against the installed package (not python/).
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
