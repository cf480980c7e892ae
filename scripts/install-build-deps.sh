#!/usr/bin/env bash
# Installs the system tools the build needs and a fresh machine may lack:
# cmake and nasm, which build libjpeg-turbo (with SIMD) for ringfeed-decode.
# Idempotent; uses Debian's packages (needs root, as CI runs).
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v nasm >/dev/null || missing+=(nasm)
command -v git >/dev/null || missing+=(git)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing build tools: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
