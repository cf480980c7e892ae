#!/usr/bin/env bash
# The main job on a fresh machine: build ringfeed, get the benchmark images
# (the shared 5,000-photo set when ../shared/datasets is there, else a small
# generated one), pack them, verify every checksum, and stream two shuffled
# epochs through the epoch engine (io_uring, one executor per core).
#   usage: scripts/demo.sh [OUT_DIR]        (default: target/demo)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${1:-$root/target/demo}
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 2; }
bash "$root/scripts/install-build-deps.sh"

cargo build --release --locked -p ringfeed-cli --bins
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/ringfeed

shared=$root/../shared/datasets
data=${BENCH_DATA:-$HOME/.cache/ringfeed-bench}
if [ -x "$shared/make.sh" ] || [ -f "$shared/make.sh" ]; then
  bash "$shared/make.sh" "$data"
  images=$data/imagefolder/train
  text=$data/text
else
  # No shared datasets: a small ImageFolder of random bytes (the pack
  # format does not decode images).
  images=$root/target/demo-src/images
  text=
  if [ "$(find "$images" -type f 2>/dev/null | wc -l)" != 500 ]; then
    rm -rf "$images"
    for c in 0 1 2 3 4; do
      mkdir -p "$images/class$c"
      for i in $(seq -w 0 99); do head -c $((2000 + 10#$i * 300)) /dev/urandom > "$images/class$c/$i.jpg"; done
    done
  fi
fi

mkdir -p "$out"
"$bin" pack "$images" "$out/images"
"$bin" inspect "$out/images"
"$bin" verify "$out/images"
"$bin" bench "$out/images" --epochs 2 --io direct
if [ -z "$text" ]; then :; else
  # Real photos: decode + RandomResizedCrop + flip on the worker cores.
  "$bin" bench "$out/images" --pipeline train --size 224
fi
if [ -n "$text" ] && [ -d "$text" ]; then
  "$bin" pack "$text" "$out/text"
  "$bin" verify "$out/text"
  "$bin" bench "$out/text" --epochs 2 --io direct --shuffle block
fi
