#!/usr/bin/env bash
# Installs what tsbuild and its tests need on Debian 12 (as root): gcc and libc6-dev to compile the
# RUN helper (packages/runtime/src/run-helper.c, statically linked) and the libc addon
# (packages/linux/src/native.c), busybox-static for the local
# base image, and the reference tools the integration tests compare against (buildah, skopeo,
# umoci, runc) plus Debian's registry server, and debootstrap for the benchmarks' Debian tree. Then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
# Rootless (an ordinary user): uidmap's setuid newuidmap/newgidmap map the subordinate ids,
# slirp4netns gives a rootless RUN its network.
apt_pkgs=(gcc libc6-dev busybox-static util-linux iproute2 nftables tini bzip2 xz-utils zstd docker-registry buildah skopeo umoci runc pigz tar debootstrap uidmap slirp4netns qemu-user-static)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Foreign-architecture RUN steps run under QEMU user emulation (qemu-user-static). binfmt_misc
# may be unmounted (a VM without systemd-binfmt), and Debian's entries are only registered by
# systemd-binfmt: register those of /usr/lib/binfmt.d/qemu-*.conf that are not registered yet,
# as written. Their flags keep F ("fix binary"): the kernel opens the interpreter when the entry
# is registered and uses that open file for every exec, so a binary runs inside the container's
# mount namespace (after pivot_root) without the interpreter in the image; without F the kernel
# would look up /usr/libexec/qemu-binfmt/... in the container's root (binfmt-misc.rst).
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then mount -t binfmt_misc binfmt_misc "$binfmt"; fi
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  [ -e "$conf" ] || continue
  while IFS= read -r line; do
    case "$line" in ''|'#'*) continue ;; esac
    name=$(printf '%s' "$line" | cut -d"${line:0:1}" -f2)
    if [ ! -e "$binfmt/$name" ]; then printf '%s' "$line" > "$binfmt/register"; fi
  done < "$conf"
done
# arm64 packages (busybox-static:arm64) for the arm64 base image fixtures/busybox-rootfs-arm64.mjs makes.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  apt-get update -qq
fi
node fixtures/busybox-rootfs-arm64.mjs --fetch
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
