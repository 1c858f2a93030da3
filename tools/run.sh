#!/usr/bin/env bash
# Installs what is needed, builds kiroku and runs the API server on the
# default data directory (var/kiroku, or $KIROKU_DATA), creating the journal
# and a demo tenant the first time. It prints how to log in and call it; stop
# it with Ctrl-C (a clean shutdown). Extra arguments go to `kiroku serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target kiroku
data=${KIROKU_DATA:-var/kiroku}
exec build/tools/kiroku serve --data "$data" --demo "$@"
