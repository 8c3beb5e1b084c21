#!/usr/bin/env bash
# Builds a minimal Debian bookworm image locally with debootstrap and imports
# it as $1 (default codex-connector/debian:bookworm). It exists for machines
# that cannot pull from a registry; elsewhere the default base of
# Dockerfile.codex (node:22-bookworm-slim) is simpler. Reuses an existing image.
set -euo pipefail
name=${1:-codex-connector/debian:bookworm}
if docker image inspect "$name" >/dev/null 2>&1; then
  echo "base image $name exists; remove it to rebuild" >&2
  exit 0
fi
command -v debootstrap >/dev/null || {
  echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
# The mirror this machine's apt already uses: the only one known to be reachable.
mirror=$(grep -hoE '^(URIs:|deb) +[a-z]+://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -v security | head -n1 | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$name" >/dev/null
echo "built base image $name from $mirror" >&2
