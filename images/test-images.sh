#!/usr/bin/env bash
# Builds the toolchain images the tests run Codex on: Debian with Go, and
# Debian with Python and pytest, neither with Node (Codex must not need it).
# Tests reach no registry, so these are made here, once per machine, from
# Debian's packages; an image that exists is reused.
#   $1  the Debian bookworm base (default: debian:bookworm-slim, or the local
#       debootstrap base when that cannot be pulled)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-debian:bookworm-slim}
local_base=${LOCAL_BASE:-codex-connector/debian:bookworm}
if ! docker image inspect "$base" >/dev/null 2>&1 && ! docker pull -q "$base" >/dev/null 2>&1; then
  echo "test images: cannot pull $base; using the local Debian base $local_base" >&2
  images/debian-base.sh "$local_base"
  base=$local_base
fi
build() {
  local tag=$1 pkgs=$2
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "test images: $tag exists; remove it to rebuild" >&2
    return
  fi
  echo "test images: building $tag on $base ($pkgs)" >&2
  printf 'FROM %s\nRUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; apt-get install -y --no-install-recommends %s; rm -rf /var/lib/apt/lists/*; ! command -v node\n' \
    "$base" "$pkgs" | docker build -q -t "$tag" - >/dev/null
}
build codex-connector/test-go:bookworm "golang-go git ca-certificates"
build codex-connector/test-python:bookworm "python3 python3-pytest git ca-certificates"
