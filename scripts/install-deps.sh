#!/usr/bin/env bash
# Installs what tsbuild and its tests need on Debian 12 (as root): busybox-static for the local
# base image, and the reference tools the integration tests compare against (buildah, skopeo,
# umoci, runc) plus Debian's registry server, and debootstrap for the benchmarks' Debian tree. Then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
apt_pkgs=(busybox-static util-linux iproute2 nftables tini bzip2 xz-utils zstd docker-registry buildah skopeo umoci runc pigz tar debootstrap)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian registry package starts a service on :5000; the tests start their own on random ports.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
# npm install, not npm ci: npm 11 writes lock files without other platforms' optional packages
# (rollup's, esbuild's), which `npm ci` then rejects as out of sync. The lock file still pins versions.
npm install --no-audit --no-fund
npm run build
