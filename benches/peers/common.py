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
