# shellcheck shell=bash
# Source this file, then call install_prometheus: installs Debian's `prometheus` (the tests start their own server
# on a free loopback port) and makes sure no packaged daemon keeps port 9090.
install_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1; then
        # Keep the package's postinst from starting the daemon where invoke-rc.d would (policy-rc.d 101 = deny).
        local policy=/usr/sbin/policy-rc.d created_policy=""
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
        [ -n "$created_policy" ] && rm -f "$policy"
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service prometheus stop >/dev/null 2>&1 || true
    fi
    prometheus --version 2>&1 | head -n 1
}
