#!/usr/bin/env bash
# `make dist`: the extension library with README.md, the licences and the third-party licence
# texts of every crate built into it, in one archive.
#
#   scripts/dist.sh LIBRARY OUT_DIR     # prints the archive's path
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
library="$1"
out="$(mkdir -p "$2" && cd "$2" && pwd)"
[[ -f "$library" ]] || { echo "dist: no library at $library; build it first" >&2; exit 2; }
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
target="$(rustc -vV | sed -n 's/^host: //p')"
name="s3vfs-$version-$target"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
cp "$library" "$stage/$name/"
cp README.md LICENSE-MIT LICENSE-APACHE "$stage/$name/"

# The crates the library is built from (normal dependencies, not tests' or build tools'):
# name, version, licence and every licence file the crate ships.
registry="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ 2>/dev/null | head -1)"
{
  echo "# Third-party licences"
  echo
  echo "libs3vfs is built from these crates (cargo tree -e normal), each under the licence shown."
  cargo tree --offline -e normal --prefix none -f '{p}|{l}' |
    sed 's/ (.*)//' | grep -v '^s3vfs ' | sort -u |
    while IFS='|' read -r package licence; do
      crate="${package% v*}"
      crate_version="${package##* v}"
      echo
      echo "## $crate $crate_version ($licence)"
      shipped=0
      for file in "$registry$crate-$crate_version"/{LICENSE,LICENCE,COPYING}*; do
        [[ -f "$file" ]] || continue
        shipped=1
        echo
        echo "### ${file##*/}"
        echo
        echo '```'
        cat "$file"
        echo '```'
      done
      if [[ "$shipped" == 0 ]]; then
        echo
        echo "The crate's package ships no licence file; its manifest names the licence above."
      fi
    done
} >"$stage/$name/THIRD-PARTY-LICENSES.md"

tar -C "$stage" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
