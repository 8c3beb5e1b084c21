#!/usr/bin/env bash
# Builds a minimal Debian bookworm image locally with debootstrap and imports
# it as $1 (default codex-connector/debian:bookworm). It exists for machines
# that cannot pull from a registry; elsewhere the default base of
# Dockerfile.codex (node:22-bookworm-slim) is simpler. Reuses an existing image.
#
# The packages come from the mirror this machine's apt already uses, the only
# one known to be reachable from here (or DEBIAN_MIRROR, when set); there is
# no built-in fallback, since a mirror this script guessed may be one that
# this machine must not or cannot reach.

# apt_mirror prints the first Debian archive that the apt sources files
# given list for binary packages of a release: a "deb" line of a .list file,
# or a deb822 stanza of a .sources file that is not disabled. Suites with a
# "-" or "/" (bookworm-security, bookworm-updates, flat repositories) are
# not an archive debootstrap can start from. It fails when there is none.
apt_mirror() {
  local f uri
  for f in "$@"; do
    [[ -f $f && -r $f ]] || continue
    case $f in
      *.sources) uri=$(awk '
        BEGIN { RS = ""; FS = "\n" }
        function release(list,   n, s, i) {
          n = split(list, s, /[ \t]+/)
          for (i = 1; i <= n; i++)
            if (s[i] != "" && !index(s[i], "-") && !index(s[i], "/")) return 1
          return 0
        }
        {
          types = uris = suites = key = ""; enabled = "yes"
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^#/) continue
            if (line ~ /^[ \t]/) val = line
            else {
              p = index(line, ":"); if (!p) continue
              key = tolower(substr(line, 1, p - 1)); val = substr(line, p + 1)
            }
            if (key == "types") types = types " " val
            else if (key == "uris") uris = uris " " val
            else if (key == "suites") suites = suites " " val
            else if (key == "enabled") { enabled = tolower(val); gsub(/[ \t]/, "", enabled) }
          }
          if (enabled == "no" || (types " ") !~ /[ \t]deb[ \t]/ || !release(suites)) next
          n = split(uris, u, /[ \t]+/)
          for (i = 1; i <= n; i++) if (u[i] ~ /^(https?|file):/) { print u[i]; exit }
        }' "$f") ;;
      *.list) uri=$(awk '
        /^[ \t]*deb[ \t]/ {
          line = $0; sub(/^[ \t]*deb[ \t]+/, "", line)
          sub(/^\[[^]]*\][ \t]*/, "", line)  # options: [arch=amd64 signed-by=...]
          n = split(line, f, /[ \t]+/)
          if (n >= 2 && f[1] ~ /^(https?|file):/ && !index(f[2], "-") && !index(f[2], "/")) { print f[1]; exit }
        }' "$f") ;;
      *) continue ;;
    esac
    if [[ -n $uri ]]; then
      echo "$uri"
      return 0
    fi
  done
  return 1
}

main() {
  set -euo pipefail
  local name=${1:-codex-connector/debian:bookworm}
  if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name exists; remove it to rebuild" >&2
    exit 0
  fi
  command -v debootstrap >/dev/null || {
    echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
  local mirror=${DEBIAN_MIRROR:-}
  if [[ -z $mirror ]] && ! mirror=$(apt_mirror /etc/apt/sources.list /etc/apt/sources.list.d/*); then
    echo "no Debian mirror in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources):" \
      "add the mirror this machine uses there, or set DEBIAN_MIRROR to the URL of a Debian archive it can reach" >&2
    exit 1
  fi
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$name" >/dev/null
  echo "built base image $name from $mirror" >&2
}

# Sourced (by its test), it only defines apt_mirror: a return outside a
# function succeeds only in a sourced file, whatever $0 is.
if ! (return 0 2>/dev/null); then
  main "$@"
fi
