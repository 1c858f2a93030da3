#!/usr/bin/env bash
# Installs what is needed, builds kiroku and runs the API server on the
# default data directory (var/kiroku, or $KIROKU_DATA), creating the journal
# and a demo tenant the first time, with daily backups (7 generations) in
# var/backups (or $KIROKU_BACKUPS) and the daily retention job, and the
# console in a browser: http://127.0.0.1:7460 for tenants, http://localhost:7461
# for operators (loopback only; two host names, as browsers keep one cookie
# per host). It prints how to log in and call it; stop it with Ctrl-C (a
# clean shutdown). Extra arguments go to `kiroku serve` (a later --gateway or
# --gateway-operator replaces these).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target kiroku
data=${KIROKU_DATA:-var/kiroku}
backups=${KIROKU_BACKUPS:-var/backups}
exec build/tools/kiroku serve --data "$data" --backups "$backups" --demo \
  --gateway http://127.0.0.1:7460 --gateway-operator http://localhost:7461 "$@"
