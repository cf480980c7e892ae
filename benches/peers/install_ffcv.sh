#!/usr/bin/env bash
# Installs the FFCV peer (benches/peers/ffcv_side.py): Debian's libturbojpeg,
# OpenCV and TBB (FFCV's C++ part builds against them; TBB is numba's
# threading layer here), and a virtualenv with ffcv 1.0.2 and pinned
# numba/llvmlite. The venv is made with --system-site-packages so torch,
# torchvision, numpy, Pillow and tqdm come from the system Python (torch
# 2.13.0 must already be there: benches/harness.py installs it).
# Idempotent: exits 0 at once when everything is already in place.
# See benches/peers/NOTES-ffcv.md.
#
#   bash benches/peers/install_ffcv.sh          # FFCV_VENV=... to move the venv
set -euo pipefail

PY="${PYTHON:-python3}"
VENV="${FFCV_VENV:-$HOME/.cache/ringfeed-bench/ffcv-venv}"
APT_PKGS=(libturbojpeg0-dev libopencv-dev pkg-config libtbb12)
# Verified together (NOTES-ffcv.md); numpy is the system's (numba 0.68.1 takes numpy 2.4).
PIP_PKGS=(ffcv==1.0.2 numba==0.68.1 llvmlite==0.50.0 opencv-python==5.0.0.93
          pytorch-pfn-extras==0.9.0 fastargs==1.2.0 terminaltables==3.1.10
          assertpy==1.1 psutil==7.2.2 tqdm==4.70.1)

check() {
  [ -x "$VENV/bin/python3" ] || return 1
  "$VENV/bin/python3" - <<'EOF' >/dev/null 2>&1
from importlib.metadata import version
import ffcv, ffcv._libffcv, ffcv.libffcv, numba, torch, cv2
assert version("ffcv") == "1.0.2", version("ffcv")
assert numba.__version__ == "0.68.1", numba.__version__
assert version("llvmlite") == "0.50.0"
from ffcv.loader import Loader
EOF
}

if check; then
  echo "ffcv peer: already installed in $VENV"
  exit 0
fi

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "ffcv peer: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
pkg-config --exists opencv4 || { echo "ffcv peer: pkg-config finds no opencv4" >&2; exit 1; }
pkg-config --exists libturbojpeg || { echo "ffcv peer: pkg-config finds no libturbojpeg" >&2; exit 1; }

"$PY" -c "import torch, torchvision" 2>/dev/null || {
  echo "ffcv peer: $PY has no torch/torchvision; install torch==2.13.0 torchvision==0.28.0 first" >&2; exit 1; }

if [ ! -x "$VENV/bin/python3" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv --system-site-packages "$VENV"
fi
# ffcv 1.0.2 ships only an sdist: pip builds its C++ extension (libffcv.cpp)
# against the pkg-config opencv4 + libturbojpeg found above.
"$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "${PIP_PKGS[@]}"

if ! check; then
  echo "ffcv peer: installed, but 'import ffcv' in $VENV still fails:" >&2
  "$VENV/bin/python3" -c "import ffcv, ffcv._libffcv, numba, torch, cv2; from ffcv.loader import Loader" >&2 || true
  exit 1
fi
echo "ffcv peer: installed in $VENV"
