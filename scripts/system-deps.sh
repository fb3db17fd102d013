#!/usr/bin/env bash
# Install the Debian packages BackApp's tests (or benchmarks) need, if they are missing.
# Usage: system-deps.sh test|bench
set -euo pipefail
want=()
case "${1:-test}" in
  test)  need=(tar:tar zstd:zstd chromium:/usr/bin/chromium) ;;
  bench) need=(tar:tar zstd:zstd pigz:pigz restic:restic time:/usr/bin/time openssl:openssl) ;;
  *) echo "usage: $0 test|bench" >&2; exit 2 ;;
esac
for pair in "${need[@]}"; do
  pkg=${pair%%:*}; cmd=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
done
[ ${#want[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
}
