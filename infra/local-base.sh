#!/usr/bin/env bash
# A local stand-in for rayproject/ray:2.60.0-py311-cpu where no registry can be reached: Debian
# bookworm (debootstrap) with Python 3.11 and the layout the Dockerfiles rely on (user `ray`,
# uid 1000, /home/ray, a pip-writable `python` first on PATH). Ray itself is not in it; the
# image installs it from pyproject.toml. Needs root, debootstrap and buildah.
#
#   bash infra/local-base.sh [IMAGE]        # default localhost/ray-standin:2.60.0-py311-cpu
set -euo pipefail
IMAGE=${1:-localhost/ray-standin:2.60.0-py311-cpu}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STORAGE=(--storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}")
if buildah "${STORAGE[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists"; exit 0
fi
work=$(mktemp -d /var/tmp/ray-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -n "${ROOTFS:-}" ]; then  # an earlier debootstrap of the same packages
  cp -a "$ROOTFS" "$work/rootfs"
else
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,ca-certificates \
    bookworm "$work/rootfs" "$MIRROR"
fi
chroot "$work/rootfs" useradd --create-home --uid 1000 --shell /bin/bash ray
chroot "$work/rootfs" su ray -c "python3.11 -m venv /home/ray/venv"
# this machine's trust store (it may hold a proxy's CA that Debian's bundle lacks)
cp "${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
ctr=$(buildah "${STORAGE[@]}" from scratch)
buildah "${STORAGE[@]}" add "$ctr" "$work/rootfs.tar" /
buildah "${STORAGE[@]}" config --env PATH=/home/ray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env HOME=/home/ray --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --user ray --workingdir /home/ray --cmd /bin/bash "$ctr"
buildah "${STORAGE[@]}" commit --rm "$ctr" "$IMAGE"
echo "base image $IMAGE built"
