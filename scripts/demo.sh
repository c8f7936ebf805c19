#!/usr/bin/env bash
# The main job on a bundled default, on a fresh machine, no sound card needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/livedemix demo "$@"
