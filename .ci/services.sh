#!/usr/bin/env bash
# Services the BullMQ source tests and benchmark need. Sourced by .ci/run; each function is idempotent.
# The tests start their own redis-server on a free loopback port: nothing here starts a daemon.

_ballast_apt_updated=""

_ballast_apt_install() {
    if [ -z "$_ballast_apt_updated" ]; then
        apt-get update -q
        _ballast_apt_updated=1
    fi
    # policy-rc.d exit 101 keeps the packages' services from starting where an init system would start them.
    local policy=/usr/sbin/policy-rc.d had_policy=""
    [ -e "$policy" ] && had_policy=1
    [ -n "$had_policy" ] || printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    local status=$?
    [ -n "$had_policy" ] || rm -f "$policy"
    return $status
}

# openssl makes the TLS test's certificate.
install_redis() {
    command -v redis-server >/dev/null && command -v openssl >/dev/null && return 0
    _ballast_apt_install redis-server openssl
}

# Debian's prometheus package ships promtool; the policy-rc.d above keeps its daemon from being started.
install_promtool() {
    command -v promtool >/dev/null && return 0
    _ballast_apt_install prometheus
}

# buildah builds the Dockerfile's runtime stage in the image test (no Docker engine runs in CI); only COPY steps, so
# no OCI runtime is needed; strip (binutils) shrinks the test binary the image holds.
install_buildah() {
    command -v buildah >/dev/null && command -v strip >/dev/null && return 0
    _ballast_apt_install buildah binutils
}

# CNCF Distribution as Debian packages it: the OCI plugin tests start their own on a free loopback port (the
# policy-rc.d above keeps the package's own service on :5000 from starting).
install_docker_registry() {
    command -v docker-registry >/dev/null && return 0
    _ballast_apt_install docker-registry
}

install_node_fixtures() {
    local dir
    dir="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)/tests/bullmq"
    if ! command -v npm >/dev/null; then
        _ballast_apt_install nodejs npm || return 1
    fi
    [ -d "$dir/node_modules/bullmq" ] && return 0
    (cd "$dir" && npm ci --no-audit --no-fund)
}
