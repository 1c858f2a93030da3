#!/usr/bin/env bash
# Installs what is needed, builds kiroku, creates a journal in the default data
# directory (var/kiroku, or $KIROKU_DATA) if there is none, appends a benchmark
# workload to it and verifies it. The server (kiroku serve) comes later; until
# then this shows the journal at work.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target kiroku
data=${KIROKU_DATA:-var/kiroku}
if [ ! -e "$data/journal/data.mdb" ]; then
  build/tools/kiroku init --data "$data"
fi
build/tools/kiroku bench append --data "$data" --events "${EVENTS:-100000}"
build/tools/kiroku verify --data "$data"
echo
echo "the journal is in $data; try: build/tools/kiroku dump --data $data --limit 5"
