#!/usr/bin/env bash
# Fails if any tracked file of the project refers to the reference folder kept
# beside the repository: a fresh clone has nothing beside it, so the suite must
# read only what the repository holds (test vectors live in tests/vectors/).
# The path is assembled here so that this file does not name it itself.
set -euo pipefail
cd "$(dirname "$0")/.."
outside="../$(printf '%s' sha red | tr -d ' ')"
if git ls-files -z | xargs -0 grep -nIF -e "$outside" -- 2>/dev/null; then
  echo "error: the files above refer to a folder outside the repository; copy what they need in" >&2
  exit 1
fi
echo "self-contained: no file refers to a folder beside the repository"
