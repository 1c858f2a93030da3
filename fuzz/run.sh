#!/bin/sh
# run.sh [SECONDS]: builds the libFuzzer targets in build-fuzz/ (clang-14,
# -DKIROKU_FUZZ=ON) and runs each for SECONDS (default 30) on a copy of its
# seed corpus in build-fuzz/corpus-run/<target>/; fuzz/corpus/ is only read.
# Crashing inputs go to build-fuzz/artifacts/<target>/. Exits non-zero if any
# target crashed, leaked, timed out or could not be built.
set -eu

secs=${1:-30}
case $secs in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build-fuzz
targets="record_fuzz note_fuzz mp_fuzz repl_fuzz payload_fuzz request_fuzz manifest_fuzz export_fuzz jsonmp_fuzz verify_state_fuzz export_state_fuzz lease_fuzz"

mkdir -p "$build"
CC=${CC:-clang-14} cmake -S "$src" -B "$build" -DKIROKU_FUZZ=ON >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    exit 1
}
cmake --build "$build" -j"$(nproc)" --target $targets

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=""
for t in $targets; do
    seeds=$src/fuzz/corpus/${t%_fuzz}
    run=$build/corpus-run/$t
    art=$build/artifacts/$t
    mkdir -p "$run" "$art"
    # Seeds join whatever earlier runs found; nothing is written to fuzz/corpus.
    cp "$seeds"/* "$run"/
    # Exports are JSON documents of a few kilobytes at the least.
    maxlen=4096
    [ "$t" = export_fuzz ] && maxlen=65536
    echo "== $t: $secs s, corpus $run"
    if ! "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$maxlen" -print_final_stats=1 -artifact_prefix="$art/" "$run" \
        >"$build/$t.log" 2>&1; then
        echo "!! $t failed; log $build/$t.log, inputs in $art/" >&2
        tail -n 40 "$build/$t.log" >&2
        failed="$failed $t"
    else
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "$build/$t.log" || true
    fi
done

if [ -n "$failed" ]; then
    echo "fuzzing found problems in:$failed" >&2
    exit 1
fi
echo "all targets ran $secs s without a finding"
