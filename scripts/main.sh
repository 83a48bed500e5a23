#!/usr/bin/env bash
# The main job: set-up, Release build of the `dsinfer` command, then `dsinfer` on the built-in
# default model (the committed trained models/demo; without it a generated one, written on
# first use under ${XDG_CACHE_HOME:-~/.cache}/dsinfer/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release dsinfer
exec build/release/dsinfer "$@"
