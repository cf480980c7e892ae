"""What the comparison scripts in benches/ share."""

import json
import os
from pathlib import Path


def drop_caches():
    """Writes back dirty pages and drops the page cache (root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


def shard_data(ds):
    """The data region of each shard of the pack dataset `ds`, in order:
    a token dataset's ids back to back (its records carry no framing)."""
    manifest = json.loads((Path(ds) / "manifest.json").read_text())
    for s in manifest["shards"]:
        with open(Path(ds) / s["file"], "rb") as f:
            head = f.read(64)
            off, n = int.from_bytes(head[24:32], "little"), int.from_bytes(head[32:40], "little")
            f.seek(off)
            yield f.read(n)
