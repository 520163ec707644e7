#!/usr/bin/env bash
# The Debian packages the tests need, installed when missing:
# - dataset-fashion-mnist: the real benchmark data set (IDX files under /usr/share/datasets/fashion-mnist);
#   its tests fail, not skip, without it;
# - chromium: renders the benchmark and dispute reports headless; without it those tests skip and say why
#   (in CI they fail);
# - openssl: makes the self-signed certificate of the https suspect test (skips without it; fails in CI).
set -uo pipefail
want=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || want+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v openssl >/dev/null 2>&1 || want+=(openssl)
[ ${#want[@]} -eq 0 ] && exit 0
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
if command -v apt-get >/dev/null 2>&1; then
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null) && exit 0
fi
echo "warning: could not install ${want[*]} with apt-get; Fashion-MNIST tests will fail and the report's browser check will skip" >&2
exit 0
