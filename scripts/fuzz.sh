#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions each (default 1,000,000),
# starting from the committed seeds in fuzz/corpus/TARGET and keeping what
# the fuzzer finds in target/fuzz-corpus/TARGET (not committed). Crashes
# land in fuzz/artifacts/TARGET; each one fixed becomes a regression test.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain is
# enough with RUSTC_BOOTSTRAP=1 and no sanitizer.
# Usage: scripts/fuzz.sh [TARGET...]   (RUNS=N to change the count)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-1000000}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dataset tfrecord ffrecord webdataset decode resample safetensors)
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O --sanitizer none
for t in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$t"
  echo "== $t: $runs runs" >&2
  cargo fuzz run -O --sanitizer none "$t" "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- \
    -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|==|SUMMARY|.*panicked)" || true
done
