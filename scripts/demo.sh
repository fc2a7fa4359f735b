#!/usr/bin/env bash
# First command of the README: on a fresh machine, install what the build needs and run `ballast demo` on the
# simulated cluster (no Kubernetes, no network). Extra arguments go to `ballast demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo run --quiet --release --locked -p ballast -- demo "$@"
