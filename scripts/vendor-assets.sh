#!/usr/bin/env bash
# Re-downloads the browser files Consentry serves from its own binary (GraphiQL and what it
# needs, api/assets/vendor/) from the npm registry and checks each against its pinned sha256.
#
#   scripts/vendor-assets.sh            check: the registry's bytes, the pins and the files in
#                                       api/assets/vendor/ are all the same
#   scripts/vendor-assets.sh --write    (re)write api/assets/vendor/ from the registry, after
#                                       checking the pins (for a version bump: change FILES
#                                       below first, with the new sha256, and the README)
#
# Needs npm (it only downloads: `npm pack`, which also checks the registry's own integrity
# hash of each tarball) and sha256sum. Nothing here runs at build time: the binary embeds the
# committed files, so building Consentry needs no Node.js and no network.
# Exits 0 when everything matches, 1 on a mismatch, 2 when it cannot run.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor_dir="$repo_root/api/assets/vendor"

# package@version | path inside the tarball | sha256 (keep api/assets/vendor/README.md equal)
FILES=(
  "react@18.3.1|package/umd/react.production.min.js|d949f1c3687aedadcedac85261865f29b17cd273997e7f6b2bfc53b2f9d4c4dd"
  "react@18.3.1|package/LICENSE|52412d7bc7ce4157ea628bbaacb8829e0a9cb3c58f57f99176126bc8cf2bfc85"
  "react-dom@18.3.1|package/umd/react-dom.production.min.js|35f4f974f4b2bcd44da73963347f8952e341f83909e4498227d4e26b98f66f0d"
  "react-dom@18.3.1|package/LICENSE|52412d7bc7ce4157ea628bbaacb8829e0a9cb3c58f57f99176126bc8cf2bfc85"
  "graphql-ws@5.16.2|package/umd/graphql-ws.min.js|deb8cd1b4feadd52ae0365a4df8a89847f2904c2a8cbdac8756b8d962c0cb8e4"
  "graphql-ws@5.16.2|package/LICENSE.md|58737f97fe15c9aa68eb067f97a5488ceffca6835bfce511c6819c5156dca48e"
  "graphiql@3.8.3|package/graphiql.min.js|22faab94067b695e5f7959619fbe686ebcc8955002a0c97d986bcbba4ad4bc2c"
  "graphiql@3.8.3|package/graphiql.min.css|b1868247f8e0502cd869e581f5f3cb55b334862e7f51b1d6cbace11059b9adc2"
  "graphiql@3.8.3|package/LICENSE|4b18fbe55c4e8f9169cb702be138f4d858a2dad920c39857204ffdc9c1c9fdc4"
)

write=false
case "${1:-}" in
  "") ;;
  --write) write=true ;;
  *) echo "usage: scripts/vendor-assets.sh [--write]" >&2; exit 2 ;;
esac
for tool in npm tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "vendor-assets: $tool is required" >&2; exit 2; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
declare -A unpacked=()
for entry in "${FILES[@]}"; do
  IFS='|' read -r spec inner expected <<<"$entry"
  name="${spec%@*}"
  version="${spec##*@}"
  unpack="$work/$name-$version"
  if [[ -z "${unpacked[$spec]:-}" ]]; then
    mkdir -p "$unpack"
    tarball="$(cd "$work" && npm pack --silent "$spec" | tail -n 1)"
    tar -xzf "$work/$tarball" -C "$unpack"
    unpacked[$spec]=1
  fi
  fetched="$unpack/$inner"
  # Files keep their name inside the tarball, in a folder named after package and version.
  vendored="$vendor_dir/$name-$version/$(basename "$inner")"
  actual="$(sha256sum "$fetched" | cut -d' ' -f1)"
  if [[ "$actual" != "$expected" ]]; then
    echo "MISMATCH  $spec $inner: the registry's file is $actual, pinned $expected" >&2
    failed=1
    continue
  fi
  if $write; then
    mkdir -p "$(dirname "$vendored")"
    cp "$fetched" "$vendored"
    echo "wrote     ${vendored#"$repo_root"/}  $actual"
  elif [[ ! -f "$vendored" ]]; then
    echo "MISSING   ${vendored#"$repo_root"/} (run with --write)" >&2
    failed=1
  elif [[ "$(sha256sum "$vendored" | cut -d' ' -f1)" != "$expected" ]]; then
    echo "CHANGED   ${vendored#"$repo_root"/} differs from $spec $inner" >&2
    failed=1
  else
    echo "ok        ${vendored#"$repo_root"/}  $actual"
  fi
done
exit "$failed"
