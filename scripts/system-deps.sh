#!/usr/bin/env bash
# The one system package a test needs: Debian's chromium, to render the benchmark report
# headless. Installed when missing; without it that one test skips and says why.
set -uo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
if command -v apt-get >/dev/null 2>&1; then
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null) && exit 0
fi
echo "warning: could not install chromium; the browser check of the report will skip" >&2
exit 0
