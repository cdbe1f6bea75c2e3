#!/usr/bin/env bash
# The README's first command: a whole Cairn network on this machine (`cairn devnet`), with the
# set-up a fresh machine needs done first: the build's Debian packages (libclang for RocksDB)
# and Bitcoin Core, found
# or built once into the per-machine cache (about 9 minutes on 2 cores; `--embedded` skips
# it and runs on the embedded in-process chain). Every argument goes to `cairn devnet`.
#
# It runs the dev build that `.ci/run` makes too (same target directory, same target), so the
# second command does not compile every dependency again; the model runs optimised even there
# (Cargo.toml), and a devnet's load needs no more.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh

setup_build_tools
embedded=false
for a in "$@"; do [ "$a" = "--embedded" ] && embedded=true; done
if ! $embedded && ! setup_bitcoin_core; then
  setup_say "Bitcoin Core could be neither found nor built: the devnet runs on the embedded chain"
fi
exec cargo run --locked -- devnet "$@"
