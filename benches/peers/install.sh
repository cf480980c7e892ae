#!/usr/bin/env bash
# Installs what one peer side of the loader benchmark needs, idempotently:
#   bash benches/peers/install.sh dali   NVIDIA DALI 2.4.0 (nvidia-dali-cuda130,
#                                        run CPU-only; its PyTorch plugin ships in the wheel)
#   bash benches/peers/install.sh spdl   Meta SPDL 0.8.0 (spdl, spdl_io, spdl_core) and
#                                        Debian bookworm's FFmpeg 5.1 shared libraries,
#                                        which the wheel's libspdl_ffmpeg5 links against
# Both need torch (2.13.0 here, see benches/harness.py). Uses the python3 on
# PATH (PYTHON=... to override). Exits 0 at once when already installed.
set -euo pipefail
PY=${PYTHON:-python3}
DALI_VERSION=2.4.0
SPDL_VERSION=0.8.0
# libspdl_ffmpeg5 NEEDS libavutil.so.57 libavcodec.so.59 libavformat.so.59
# libavdevice.so.59 libavfilter.so.8 (readelf -d); swscale/swresample come
# with them. Debian 12 ships FFmpeg 5.1 under these names (7:5.1.x).
FFMPEG_PKGS=(libavcodec59 libavformat59 libavfilter8 libavutil57 libswscale6 libswresample4 libavdevice59)

has_version() { # package version
  "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null
}

case "${1:-}" in
  dali)
    if has_version nvidia-dali-cuda130 "$DALI_VERSION" \
        && "$PY" -c "import nvidia.dali, nvidia.dali.plugin.pytorch" 2>/dev/null; then
      exit 0
    fi
    "$PY" -m pip install --quiet "nvidia-dali-cuda130==$DALI_VERSION"
    "$PY" -c "import nvidia.dali, nvidia.dali.plugin.pytorch"
    ;;
  spdl)
    missing=()
    for p in "${FFMPEG_PKGS[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]} (apt-get install them as root)" >&2
        exit 1
      fi
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! { has_version spdl "$SPDL_VERSION" && has_version spdl_io "$SPDL_VERSION"; }; then
      "$PY" -m pip install --quiet "spdl==$SPDL_VERSION" "spdl_io==$SPDL_VERSION" "spdl_core==$SPDL_VERSION"
    fi
    # Loads libspdl: fails when no FFmpeg the wheel supports can be found.
    "$PY" -c "from spdl.io.lib import _libspdl as l; l.ImageFrames" \
      || { echo "spdl: libspdl could not load FFmpeg's shared libraries" >&2; exit 1; }
    ;;
  *)
    echo "usage: bash benches/peers/install.sh dali|spdl" >&2
    exit 2
    ;;
esac
