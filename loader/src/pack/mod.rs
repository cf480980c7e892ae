//! The pack format: shards of records with an index and checksums, and a
//! manifest. See `docs/FORMAT.md` for the byte layout.

pub(crate) mod format;
pub(crate) mod manifest;
pub(crate) mod parts;
pub(crate) mod reader;
pub(crate) mod verify;
pub(crate) mod writer;
