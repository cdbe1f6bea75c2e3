# Set-up shared by the README's two commands (scripts/devnet.sh and .ci/run): each installs
# what it needs when missing, so both work on a fresh machine with only Rust on it. Sourced,
# not run: the functions export what later steps use (PATH, BITCOIND_EXE, CAIRN_*).
#
# Debian packages come from apt-get (as root, or with sudo); Python packages go into the
# project's own virtual environment ($CAIRN_VENV, default ~/.cache/cairn/venv), never into the
# system Python (Debian's refuses `pip install`, PEP 668); Node packages into
# ~/.cache/cairn/browser. Nothing is downloaded but from the package registries.

CAIRN_CACHE="${CAIRN_CACHE:-$HOME/.cache/cairn}"
export CAIRN_VENV="${CAIRN_VENV:-$CAIRN_CACHE/venv}"
export CAIRN_MODELS="${CAIRN_MODELS:-$CAIRN_CACHE/models}"
export CAIRN_PLAYWRIGHT="${CAIRN_PLAYWRIGHT:-$CAIRN_CACHE/browser/node_modules/playwright-core}"
# One target directory outside the clone, shared by every clone and both commands.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${CAIRN_TARGET_DIR:-$CAIRN_CACHE/target}}"
# An explicit target keeps build scripts and their dependencies apart from the code they build,
# in every command alike. Without it `cargo test` shares some host dependencies with the target
# and `cargo clippy` cannot, so the two hashed librocksdb-sys's build script differently and each
# compiled RocksDB's C++ (the longest step of a cold build) on its own.
if [ -z "${CARGO_BUILD_TARGET:-}" ] && command -v rustc >/dev/null; then
  CARGO_BUILD_TARGET="$(rustc -vV | sed -n 's/^host: //p')"
  export CARGO_BUILD_TARGET
fi

setup_say() { printf '==> %s\n' "$*" >&2; }

# Installs Debian packages (the arguments) that dpkg does not list as installed.
setup_apt() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { setup_say "need ${missing[*]} (Debian packages): run as root or install them"; return 1; }
    sudo="sudo"
  fi
  setup_say "installing ${missing[*]} (Debian)"
  if [ -z "${SETUP_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq >&2
    SETUP_APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# What building Cairn needs: a C/C++ compiler for the -sys crates, make for jemalloc's
# (tikv-jemalloc-sys runs configure and make), libclang for RocksDB's bindings, Python 3 for
# the model download and the spec's reference check.
setup_build_tools() {
  command -v cargo >/dev/null && command -v rustc >/dev/null \
    || { setup_say "cargo or rustc not found: install Rust (rustup) first"; return 1; }
  local pkgs=(libclang-dev)
  command -v cc >/dev/null || pkgs+=(gcc)
  command -v c++ >/dev/null || pkgs+=(g++)
  command -v make >/dev/null || pkgs+=(make)
  command -v python3 >/dev/null || pkgs+=(python3)
  setup_apt "${pkgs[@]}"
}

# The project's Python environment, first on PATH: `python3` there has pip and the
# OpenTimestamps library and client when asked for (CI's cross-check against another
# timestamping system). Nothing else needs Python: models come over HTTPS, by cairn itself.
setup_python() {
  if [ ! -x "$CAIRN_VENV/bin/python3" ] || ! "$CAIRN_VENV/bin/python3" -m pip --version >/dev/null 2>&1; then
    setup_say "creating the Python environment $CAIRN_VENV"
    rm -rf "$CAIRN_VENV"
    if ! python3 -m venv "$CAIRN_VENV" >/dev/null 2>&1; then
      # Debian splits venv (and its bundled pip) out of python3.
      local v
      v="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      setup_apt python3-venv "python$v-venv"
      rm -rf "$CAIRN_VENV"
      python3 -m venv "$CAIRN_VENV"
    fi
  fi
  export PATH="$CAIRN_VENV/bin:$PATH"
  # Pinned requirements (NAME==VERSION): pip does nothing, offline, when they are satisfied,
  # and moves the environment to the pin when one changes.
  if [ $# -gt 0 ]; then
    python3 -m pip install -q --disable-pip-version-check "$@" >&2
  fi
}

# Bitcoin Core: found (BITCOIND_EXE, PATH, the cache) or built once into the cache by
# scripts/bitcoin-core.sh. Exports BITCOIND_EXE; returns non-zero when neither works.
setup_bitcoin_core() {
  local here exe
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  if exe="$(bash "$here/bitcoin-core.sh")"; then
    export BITCOIND_EXE="$exe"
    setup_say "Bitcoin Core: $BITCOIND_EXE"
  else
    return 1
  fi
}

# js-libp2p (interop/js, pinned by its package-lock.json) for the test in which a peer of
# another libp2p implementation joins a coordinator. Node.js 20 or newer.
setup_interop_js() {
  local pkgs=()
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  [ ${#pkgs[@]} -eq 0 ] || setup_apt "${pkgs[@]}" || return 1
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 20 ]; then
    setup_say "Node.js $(node --version 2>/dev/null) is older than the 20 js-libp2p needs: the interop test will say so"
    return 1
  fi
  # No install scripts: the packages are plain JavaScript, and none of theirs may run here.
  npm ci --prefix interop/js --ignore-scripts --no-audit --no-fund --silent >&2
}

# Chromium and playwright-core (which needs Node.js 20 or newer) for the dashboard's browser test.
CAIRN_PLAYWRIGHT_VERSION=1.65.1
setup_browser() {
  local pkgs=(chromium)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  setup_apt "${pkgs[@]}" || return 1
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 20 ]; then
    setup_say "Node.js $(node --version 2>/dev/null) is older than the 20 playwright-core needs: the browser test will say so"
    return 1
  fi
  if ! grep -q "\"version\": \"$CAIRN_PLAYWRIGHT_VERSION\"" "$CAIRN_PLAYWRIGHT/package.json" 2>/dev/null; then
    setup_say "installing playwright-core $CAIRN_PLAYWRIGHT_VERSION (npm) into $CAIRN_CACHE/browser"
    mkdir -p "$CAIRN_CACHE/browser"
    npm install --prefix "$CAIRN_CACHE/browser" --no-audit --no-fund --silent \
      "playwright-core@$CAIRN_PLAYWRIGHT_VERSION" >&2
  fi
}
