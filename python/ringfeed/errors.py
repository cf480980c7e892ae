"""Exceptions raised by ringfeed, one class per kind of error.

Who is at fault decides the class, as in the Rust crates' error enums:

- the data: :class:`CorruptDataError` (a checksum or format rule fails; the
  message names the file, record and byte), :class:`UnsupportedDataError`,
  :class:`DecodeError` (a record that is not a usable image);
- the caller: :class:`ConfigError` (also a :class:`ValueError`);
- the system: :class:`IoError` (also an :class:`OSError`, with ``errno``);
- user code: :class:`TransformError`;
- ringfeed itself: :class:`InternalError` (a bug: please report it).

Every class derives from :class:`RingfeedError`.
"""

__all__ = [
    "RingfeedError", "ConfigError", "IoError", "CorruptDataError", "UnsupportedDataError",
    "DecodeError", "TransformError", "ShutdownError", "OutOfMemoryError", "InternalError",
]


class RingfeedError(Exception):
    """Base class of every error ringfeed raises."""


class ConfigError(RingfeedError, ValueError):
    """An invalid argument or configuration: the caller's to fix."""


class IoError(RingfeedError, OSError):
    """The system refused an open, read or write (``errno`` says why)."""


class CorruptDataError(RingfeedError):
    """Data that fails its checksum or its format's rules."""


class UnsupportedDataError(RingfeedError):
    """Valid data of a kind this ringfeed does not read (a newer format version)."""


class DecodeError(RingfeedError):
    """A record that is not a usable image."""


class TransformError(RingfeedError):
    """A user transform failed or panicked."""


class ShutdownError(RingfeedError):
    """The loader's workers ended before the run did."""


class OutOfMemoryError(RingfeedError, MemoryError):
    """An allocation was refused."""


class InternalError(RingfeedError):
    """A bug in ringfeed: please report it with the message."""
