"""ringfeed: data loading for PyTorch at the speed of the disk and the cores.

A drop-in for ``torch.utils.data.DataLoader`` over pack datasets: one
io_uring executor per core reads checksummed records with direct I/O,
decodes and augments images on the same core, and hands each batch to
torch without a copy (DLPack; batch memory is recycled when torch frees
it). Epoch orders depend only on ``(seed, epoch, rank, world_size)`` and a
run resumes exactly from :meth:`Loader.state_dict`.

>>> import ringfeed, tempfile, pathlib
>>> src = pathlib.Path(tempfile.mkdtemp())
>>> for i in range(10):
...     _ = (src / f"doc{i}.txt").write_text(f"document {i}")
>>> out = pathlib.Path(tempfile.mkdtemp()) / "docs.rf"
>>> ringfeed.pack(src, out)["records"]
10
>>> ds = ringfeed.Dataset(out)
>>> ds[3].payload
b'document 3'
>>> loader = ringfeed.Loader(out, batch_size=4, seed=7, cores=1)
>>> [len(payloads) for payloads, labels in loader]
[4, 4, 2]

Image datasets (ImageFolder trees, WebDataset tars, TFRecords) give
``(images, labels)`` tensors: ``pipeline="train"`` is torchvision's
RandomResizedCrop + flip + normalize, ``"val"`` Resize + CenterCrop.
"""

from ._ringfeed import __version__
from ._ckpt import load_checkpoint, save_checkpoint
from ._dataset import Dataset, Record, pack, verify
from ._loader import Batch, Loader
from ._tokens import TokenBatch, TokenLoader
from .errors import (
    ConfigError,
    CorruptDataError,
    DecodeError,
    InternalError,
    IoError,
    OutOfMemoryError,
    RingfeedError,
    ShutdownError,
    TransformError,
    UnsupportedDataError,
)

__all__ = [
    "__version__", "pack", "verify", "Dataset", "Record", "Loader", "Batch", "TokenLoader", "TokenBatch",
    "load_checkpoint", "save_checkpoint", "RingfeedError", "ConfigError", "IoError", "CorruptDataError",
    "UnsupportedDataError", "DecodeError", "TransformError", "ShutdownError", "OutOfMemoryError", "InternalError",
]
