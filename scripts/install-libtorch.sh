#!/usr/bin/env bash
# Installs the CPU part of libtorch 2.13.0 (what tch 0.26 needs) into
# .libtorch/ at the repository root, which .cargo/config.toml points LIBTORCH
# at for this workspace. A crate outside it that uses ringfeed's `tch` sets
# LIBTORCH=<this repository>/.libtorch itself (environment or its own
# .cargo/config.toml [env]), and calls ringfeed_build::link_libtorch() in its
# build.rs for the rpath (build-support/). Idempotent: does nothing when that
# version is already there.
#
# Source: PyPI's torch 2.13.0 wheel (the only registry CI reaches). That
# wheel is built for CUDA, so its CPU library needs two small CUDA runtime
# libraries (cudart, cupti), taken from their PyPI wheels; its libtorch.so is
# only a shim that pulls libtorch_cpu and libtorch_cuda, so the slice gets an
# empty shim instead. About 0.5 GB on disk.
#
# For GPU training, point LIBTORCH at a full CUDA libtorch instead (the
# environment variable wins over .cargo/config.toml); ringfeed_build's
# link_libtorch() then links libtorch_cuda with --no-as-needed so it is not
# dropped.
#
# Usage: scripts/install-libtorch.sh [DEST]
set -euo pipefail
version=2.13.0
cudart=13.0.96
cupti=13.0.85
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.libtorch}
if [ "$(cat "$dest/build-version" 2>/dev/null)" = "$version" ] && [ -f "$dest/.complete" ]; then
  exit 0
fi
echo "installing libtorch $version (CPU slice of the PyPI wheel) into $dest" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/libtorch.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" \
  "torch==$version" "nvidia-cuda-runtime==$cudart" "nvidia-cuda-cupti==$cupti"
rm -rf "$dest.partial"
mkdir -p "$dest.partial/lib"
python3 - "$work" "$dest.partial" <<'EOF'
import pathlib, shutil, sys, zipfile
work, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
libs = {"torch/lib/libtorch_cpu.so", "torch/lib/libc10.so", "torch/lib/libgomp.so.1",
        "nvidia/cu13/lib/libcudart.so.13", "nvidia/cu13/lib/libcupti.so.13"}
found = set()
for wheel in work.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if name in libs:
                target = dest / "lib" / pathlib.PurePosixPath(name).name
                found.add(name)
            elif name.startswith("torch/include/") and not name.endswith("/"):
                target = dest / name[len("torch/"):]
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            target.chmod(0o755 if "/lib/" in str(target) else 0o644)
missing = libs - found
if missing:
    sys.exit(f"the wheels lack {sorted(missing)}")
EOF
# libtorch.so is linked by torch-sys; an empty one stands in for the shim.
cc -shared -o "$dest.partial/lib/libtorch.so" -x c /dev/null -Wl,-soname,libtorch.so
echo "$version" >"$dest.partial/build-version"
touch "$dest.partial/.complete"
rm -rf "$dest"
mv "$dest.partial" "$dest"
du -sh "$dest" >&2
