#!/usr/bin/env bash
# Build the docker sandbox image without a container registry: a minimal Debian root file system made
# with debootstrap from Debian's package archive, imported with `docker import`.
#
#   sandbox/build_image.sh            # builds evoforge-sandbox:latest unless it already exists
#   EVOFORGE_DOCKER_IMAGE=name:tag sandbox/build_image.sh
#   EVOFORGE_DEBIAN_MIRROR=http://... sandbox/build_image.sh
#
# Equivalent to sandbox/Dockerfile for what evoforge needs: python3 (3.11 on bookworm) and numpy, and
# a `nobody` user (uid/gid 65534, which Debian's base-passwd always has), whose HOME (/nonexistent) is
# on the read-only root; user site-packages off (PYTHONNOUSERSITE), so no start-up hook can be planted.
# The repo's `evaluators` package is not baked in: DockerSandbox mounts it read-only per evaluation,
# so the image never goes stale when the code changes. Needs root (debootstrap chroots) and a running
# Docker engine.
set -euo pipefail

IMAGE="${EVOFORGE_DOCKER_IMAGE:-evoforge-sandbox:latest}"
SUITE="${EVOFORGE_DEBIAN_SUITE:-bookworm}"
MIRROR="${EVOFORGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "build_image: $IMAGE already exists; nothing to do" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "build_image: debootstrap needs root; run as root or build sandbox/Dockerfile instead" >&2
  exit 1
fi
command -v debootstrap >/dev/null 2>&1 || {
  echo "build_image: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

ROOTFS="$(mktemp -d /tmp/evoforge-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT

echo "build_image: debootstrap $SUITE (minbase + python3, python3-numpy) into $ROOTFS" >&2
debootstrap --variant=minbase --include=python3,python3-numpy "$SUITE" "$ROOTFS" "$MIRROR" \
  >"$ROOTFS.log" 2>&1 || { tail -n 20 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"

# Smaller image, same behaviour: caches, docs and man pages are never read inside the sandbox.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*

echo "build_image: docker import -> $IMAGE" >&2
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'ENV PYTHONNOUSERSITE=1' \
  --change 'USER 65534:65534' \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
# A container must actually run (cgroups, runc): an image that exists should be an image that works.
if ! docker run --rm --network none "$IMAGE" python3 -c \
    "import numpy, sys; print('build_image: ok, python', sys.version.split()[0], 'numpy', numpy.__version__)" >&2; then
  echo "build_image: a container from $IMAGE does not run here; removing the image" >&2
  docker image rm "$IMAGE" >/dev/null 2>&1 || true
  exit 1
fi
