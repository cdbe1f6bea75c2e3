#!/usr/bin/env bash
# Runs the benchmark suite and writes BENCHMARKS.md from what it prints: a table of the
# `summary:` lines, then every bench's full output under the command that produced it.
# Release build (the bench profile); slow the first time. Usage:
#   bash scripts/benchmarks.sh            # everything, writes BENCHMARKS.md
#   CAIRN_BENCH_SCALE=100 bash scripts/benchmarks.sh   # the footprint bench at 1/100 size
# Prints figures only; nothing here asserts on time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${CAIRN_TARGET_DIR:-$HOME/.cache/cairn/target}}"
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
out="${CAIRN_BENCHMARKS_OUT:-BENCHMARKS.md}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The figures of the file being replaced, shown beside the new ones ("before"): figure<TAB>value.
if [ -f "$out" ]; then
  awk -F' [|] ' '/^[|] / && $2 != "value" && $2 !~ /^---/ { sub(/^[|] /, "", $1); print $1 "\t" $2 }' "$out" >"$work/before.tsv"
  before_commit="$(sed -n 's/.* at commit `\([0-9a-f]*\)`.*/\1/p' "$out" | head -1)"
else
  : >"$work/before.tsv"
  before_commit=""
fi

# --workspace on every command: the same feature set as the tests, so nothing is rebuilt.
benches=(spec ingest audit e2e worker footprint)
echo "building the benches (release)..." >&2
cargo bench --workspace --locked --no-run >&2
for b in "${benches[@]}"; do
  echo "running bench $b..." >&2
  cargo bench --workspace --locked --bench "$b" 2>"$work/$b.err" | tee "$work/$b.out" >&2
done

cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`bash scripts/benchmarks.sh\` on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`:"
  echo "$(nproc) cores (${cpu:-unknown CPU}), $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo) RAM, $(rustc --version)."
  echo "Every figure below is printed by one of the commands listed; rerun the script to refresh this file."
  echo "Figures are wall-clock on a shared 2-core virtual machine: compare ratios measured in the same run"
  echo "rather than absolute numbers across machines."
  echo
  echo "\"before\" is the figure the replaced file showed${before_commit:+ (commit \`$before_commit\`)}; \"—\" where it had none."
  echo
  echo "| figure | value | before | command |"
  echo "|---|---|---|---|"
  for b in "${benches[@]}"; do
    sed -n 's/^summary: \(.*\) = \(.*\)$/\1\t\2/p' "$work/$b.out" | while IFS=$'\t' read -r what value; do
      # The same figure, also when a count in its name changed (receipts ingested, say).
      was="$(awk -F'\t' -v w="$what" 'BEGIN { gsub(/[0-9]+/, "#", w) } { k = $1; gsub(/[0-9]+/, "#", k) } k == w { print $2; exit }' "$work/before.tsv")"
      echo "| $what | $value | ${was:-—} | \`cargo bench --workspace --bench $b\` |"
    done
  done
  for b in "${benches[@]}"; do
    echo
    echo "## \`cargo bench --workspace --bench $b\`"
    echo
    # The bench's own description: its first doc-comment block.
    src=""
    for f in "spec/benches/$b.rs" "audit/benches/$b.rs" "coordinator/benches/$b.rs"; do
      if [ -f "$f" ]; then src="$f"; break; fi
    done
    if [ -n "$src" ]; then
      sed -n '/^\/\/!/!q; s/^\/\/! \{0,1\}//p' "$src"
      echo
    fi
    echo '```text'
    grep -v '^summary: ' "$work/$b.out" | sed -e '/./,$!d'
    if [ -s "$work/$b.err" ] && grep -q '^SKIP' "$work/$b.err"; then grep '^SKIP' "$work/$b.err"; fi
    echo '```'
  done
} >"$out"
echo "wrote $out" >&2
