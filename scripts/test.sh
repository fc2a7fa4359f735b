#!/usr/bin/env bash
# Second command of the README, and what CI runs: install and start what the tests need, then run every check.
# The tests start their own redis-server, prometheus and docker-registry processes on free loopback ports and build
# the image with buildah; this script only makes sure the binaries, the node fixtures and the Rust targets are there.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/services.sh
source .ci/prometheus.sh
source .ci/plugins.sh

export DEBIAN_FRONTEND=noninteractive
install_redis
install_prometheus
install_docker_registry
install_buildah
install_node_fixtures
install_plugin_toolchains
# Go renders the Helm chart in its test (tests/helm-render: text/template, Helm's engine; helm itself is not installable).
command -v go >/dev/null || _ballast_apt_install golang-go
rustup target add wasm32-wasip2 >/dev/null
rustup component add clippy rustfmt >/dev/null 2>&1 || true

echo "== manifests"
python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate jsonschema pyyaml
python3 scripts/validate_manifests.py
python3 scripts/check_helm_chart.py

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The policy core, runtime, clamps and simulator build without the Kubernetes client (the `cluster` feature).
cargo clippy --locked -p ballast --lib --no-default-features -- -D warnings

echo "== plugins in JavaScript and Python, from source"
build_language_plugins

echo "== tests"
log=$(mktemp)
cargo test --locked --workspace 2>&1 | tee "$log"
echo "== benchmarks, each part once (their quick mode), so a broken one fails here"
cargo test --locked -p ballast --bench '*' 2>&1 | tee -a "$log"
# One closing line for the whole suite (cargo ends with per-target lines, often an empty doc-test target's).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
rm -f "$log"
