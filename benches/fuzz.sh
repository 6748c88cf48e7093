#!/bin/bash
# Fuzz every target MINUTES minutes (default 10), one after another, keeping the corpus in
# fuzz/corpus/ for the next run (fuzz/README.md). A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes this exit non-zero.
set -euo pipefail
minutes=${1:-10}
shift || true
exec "$(dirname "$0")/../fuzz/run.sh" run "$((minutes * 60))" "$@"
