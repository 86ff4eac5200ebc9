#!/usr/bin/env bash
# A Debian bookworm base image with Python 3.11, made locally, for building the gateway image
# where no image registry is reachable (python:3.11-slim-bookworm is the base where one is):
#   scripts/base_image.sh [NAME]          default NAME tsva-base:bookworm; needs root and debootstrap
# debootstrap fetches the packages from a Debian mirror (TSVA_DEBIAN_MIRROR, default
# deb.debian.org); the root filesystem is kept as a tarball in TSVA_BASE_CACHE (default
# /var/tmp/tsva-base), so a second run only imports it. Nothing is cached when that folder cannot
# be written; delete it to rebuild from the mirror.
set -euo pipefail
name=${1:-tsva-base:bookworm}
mirror=${TSVA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${TSVA_BASE_CACHE:-/var/tmp/tsva-base}
packages=python3,python3-venv,ca-certificates
tarball="$cache/bookworm-minbase-$(echo "$packages" | md5sum | cut -c1-8).tar"

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base image $name exists"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "$0: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
  root=$(mktemp -d /var/tmp/tsva-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap bookworm ($packages) from $mirror"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # Keep the image small: no apt lists or caches, no docs.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
  if mkdir -p "$cache" 2>/dev/null && tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"; then
    src=$tarball
  else
    rm -f "$tarball.tmp"
    src=-
  fi
  if [ "$src" = - ]; then tar -C "$root" -c . | docker import -c "ENV LANG=C.UTF-8" - "$name" >/dev/null
  else docker import -c "ENV LANG=C.UTF-8" "$src" "$name" >/dev/null; fi
else
  docker import -c "ENV LANG=C.UTF-8" "$tarball" "$name" >/dev/null
fi
docker run --rm --network none "$name" python3 --version
echo "base image $name"
