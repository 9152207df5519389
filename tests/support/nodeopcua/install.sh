#!/bin/sh
# Installs the node-opcua test peer's pinned packages into ./node_modules; does nothing when they are
# already there and match package-lock.json. Used by the test command; safe to run repeatedly.
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found; the node-opcua integration tests will be skipped" >&2
    exit 1
fi
if [ -f node_modules/.package-lock.json ] && cmp -s package-lock.json .installed-lock.json 2>/dev/null; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json .installed-lock.json
