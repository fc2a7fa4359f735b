#!/usr/bin/env bash
# The JavaScript and Python policy plugins, built from source before `cargo test` (host/tests/it/languages.rs and the
# benchmarks load them). Sourced by scripts/test.sh. The build commands themselves live in one place,
# `ballast plugin build` (host/src/authoring/build.rs); this only installs the toolchains and names the projects.

# Node.js and npm for componentize-qjs; python3 with venv for componentize-py (pinned in each project).
install_plugin_toolchains() {
    command -v npm >/dev/null || _ballast_apt_install nodejs npm || return 1
    command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null && return 0
    _ballast_apt_install python3 python3-venv
}

# Project directory and the file name the tests look for in target/wasm-plugins/wasm32-wasip2/plugin
# (ballast_test_plugins::DIR, tests/test-plugins).
_ballast_language_plugins=(
    "plugins/hpa-js hpa_js.wasm"
    "plugins/hpa-py hpa_py.wasm"
    "tests/plugins/hostile-js hostile_js.wasm"
    "tests/plugins/hostile-py hostile_py.wasm"
)

# Builds them with the debug `ballast` binary into target/wasm-plugins/wasm32-wasip2/plugin, beside the Rust
# plugins host/build.rs builds there. The binary comes from the test build itself (`cargo test --no-run`), so
# the `cargo test` that follows reuses every artifact: a `cargo build -p ballast` would resolve features without
# the dev-dependencies and make the test build compile much of the dependency tree again.
build_language_plugins() {
    local root out project file started
    root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
    out="$root/target/wasm-plugins/wasm32-wasip2/plugin"
    (cd "$root" && cargo test --locked --workspace --no-run) || return 1
    mkdir -p "$out"
    started=$SECONDS
    for entry in "${_ballast_language_plugins[@]}"; do
        read -r project file <<<"$entry"
        "$root/target/debug/ballast" plugin build "$root/$project" --out "$out/$file" || return 1
    done
    echo "language plugins built in $((SECONDS - started))s"
}
