#!/usr/bin/env bash
# Builds the npm package of s3vfs (packages/npm with the extension library in lib/) with
# `npm pack`, offline.
#
#   scripts/build-npm.sh LIBRARY OUT_DIR     # prints the .tgz's path
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
library="$1"
out="$(mkdir -p "$2" && cd "$2" && pwd)"
[[ -f "$library" ]] || { echo "build-npm: no library at $library; build it first" >&2; exit 2; }
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
os="$(node -p 'process.platform')"
cpu="$(node -p 'process.arch')"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$ROOT/packages/npm/index.js" "$ROOT/packages/npm/README.md" "$ROOT/LICENSE-MIT" "$ROOT/LICENSE-APACHE" "$stage/"
mkdir "$stage/lib"
cp "$library" "$stage/lib/libs3vfs.${library##*.}"
sed -e "s/@VERSION@/$version/" -e "s/@OS@/$os/" -e "s/@CPU@/$cpu/" \
  "$ROOT/packages/npm/package.template.json" >"$stage/package.json"
(cd "$stage" && npm pack --silent --pack-destination "$out" >/dev/null)
echo "$out/s3vfs-$version.tgz"
