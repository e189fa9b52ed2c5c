#!/usr/bin/env bash
# The README's first command: installs everything, puts `tsbuild` on PATH (/usr/local/bin), makes
# a busybox base image locally (no registry needed), and builds the bundled example fixtures/hello,
# printing its image ID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# bin/tsbuild follows its own symlink back to the checkout.
ln -sf "$PWD/packages/cli/bin/tsbuild" /usr/local/bin/tsbuild
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
node fixtures/busybox-rootfs.mjs "$rootfs"
echo "importing a busybox-static root filesystem as the image 'busybox'"
tsbuild import "$rootfs" busybox
echo "building fixtures/hello as 'hello'"
tsbuild build -t hello fixtures/hello
