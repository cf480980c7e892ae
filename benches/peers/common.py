"""What the peer side scripts share: the photo list and the --limit subset."""

import sys
from pathlib import Path


def fail(side, msg):
    """Exits 1 with `side: msg` on stderr."""
    print(f"{side}: {msg}", file=sys.stderr)
    sys.exit(1)


def jpeg_files(folder):
    """The photos of an ImageFolder tree, sorted by path (symlinks followed)."""
    return sorted(p for p in Path(folder).rglob("*.jpg"))


def limited_tree(folder, n, tmp):
    """N photos evenly spaced over the sorted list, linked into tmp/class/file.jpg."""
    files = jpeg_files(folder)
    chosen = files if n >= len(files) else [files[i * len(files) // n] for i in range(n)]
    for p in chosen:
        (Path(tmp) / p.parent.name).mkdir(parents=True, exist_ok=True)
        (Path(tmp) / p.parent.name / p.name).symlink_to(p.resolve())
    return tmp


def parse(side, doc, seed_help):
    """The side scripts' shared arguments; returns (args, folder, tmp):
    `folder` is --folder, or with --limit a temporary subset tree that
    lives as long as `tmp`."""
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--pipeline", choices=["train", "val"], required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="testing: use N evenly spaced files only")
    ap.add_argument("--seed", type=int, default=None, help=seed_help)
    ap.add_argument("--dump", help="testing: torch.save the first batch (images, labels) to this path")
    a = ap.parse_args()
    if not Path(a.folder).is_dir():
        fail(side, f"--folder {a.folder} is not a directory")
    tmp, folder = None, a.folder
    if a.limit > 0:
        tmp = tempfile.TemporaryDirectory(prefix=f"{side}-")
        folder = limited_tree(a.folder, a.limit, tmp.name)
    return a, folder, tmp
