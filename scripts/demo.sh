#!/usr/bin/env bash
# The main job on a bundled default, on a fresh machine, no sound card needed: installs only what
# the demo needs (the runtime, no torch) and separates the bundled demo song.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh demo
exec .venv/bin/livedemix demo "$@"
