#!/usr/bin/env bash
# Fails if any tracked file of the project refers to a path outside the
# repository: a fresh clone has nothing beside it, so the suite must read
# only what the repository holds (test vectors live in tests/vectors/).
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\.\./shared'
if git ls-files -z | grep -zv '^tools/check-self-contained\.sh$' |
    xargs -0 grep -nI -E "$pattern" -- 2>/dev/null; then
  echo "error: the files above refer to ../shared; copy what they need into the repository" >&2
  exit 1
fi
echo "self-contained: no file refers to ../shared"
