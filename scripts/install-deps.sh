#!/usr/bin/env bash
# Installs what tsbuild and its tests need on Debian 12 (as root): busybox-static for the local
# base image, and the reference tools the integration tests compare against (buildah, skopeo,
# umoci, runc) plus Debian's registry server, and debootstrap for the benchmarks' Debian tree. Then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
# Rootless (an ordinary user): uidmap's setuid newuidmap/newgidmap map the subordinate ids,
# slirp4netns gives a rootless RUN its network.
apt_pkgs=(busybox-static util-linux iproute2 nftables tini bzip2 xz-utils zstd docker-registry buildah skopeo umoci runc pigz tar debootstrap uidmap slirp4netns)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# slirp4netns opens /dev/net/tun as the user: Debian's udev rules make it 0666; a machine without
# udev (a minimal VM, a container) leaves the kernel's 0600.
if [ -c /dev/net/tun ]; then chmod 0666 /dev/net/tun; fi
# The Debian registry package starts a service on :5000; the tests start their own on random ports.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
# npm ci, not npm install: it installs exactly what package-lock.json pins and never writes it, so
# set-up leaves `git status` clean. npm install rewrites the lock whenever its own rendering of the
# tree differs from the committed one (another npm version or .npmrc, e.g. resolved URLs), and
# would hide a lock file out of step with a package.json, which npm ci reports instead. The lock
# keeps every platform's optional packages (esbuild's, rollup's), so npm ci accepts it anywhere.
npm ci --no-audit --no-fund
npm run build
