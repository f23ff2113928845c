#!/usr/bin/env bash
# The project's test command: sets up a fresh machine, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc
