#!/usr/bin/env bash
# Installs the non-Python clients tests/clients needs, when they are missing: rabbitmq-c's
# command-line tools (Debian's amqp-tools) and Node's amqplib (npm, pinned by package-lock.json,
# into the git-ignored node_modules). Called by `make test`; quick when everything is there.
# Any failure stops here with a message saying what to install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
clients_fail() { echo "ERROR (interop clients): $*" >&2; exit 1; }
clients_apt() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
amqp_tools=(amqp-declare-queue amqp-publish amqp-consume amqp-get amqp-delete-queue)
for tool in "${amqp_tools[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        clients_apt amqp-tools || clients_fail "apt-get install amqp-tools failed (needed by tests/clients)"
        break
    fi
done
for tool in "${amqp_tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || clients_fail "$tool missing after installing amqp-tools"
done
dpkg-query -W -f='amqp-tools ${Version}\n' amqp-tools 2>/dev/null || true
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    clients_apt nodejs npm || clients_fail "node/npm not found and apt-get install nodejs npm failed"
fi
echo "node $(node --version), npm $(npm --version 2>/dev/null)"
npm ci --prefix interop/clients/node --no-audit --no-fund --loglevel=error \
    || clients_fail "npm ci --prefix interop/clients/node failed (amqplib for tests/clients)"
[ -d interop/clients/node/node_modules/amqplib ] || clients_fail "amqplib missing after npm ci"

