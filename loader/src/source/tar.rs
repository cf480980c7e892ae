//! Placeholder: tar source (being written).

use std::path::Path;

use super::{Source, SourceItem};
use crate::error::{Error, Result};
use crate::pack::manifest::{Payload, Schema};

/// tar source.
#[derive(Debug)]
pub struct TarSource {}

impl TarSource {
    /// Opens the source.
    pub fn open(_path: &Path) -> Result<Self> {
        Err(Error::Config("tar sources are not supported yet".into()))
    }
}

impl Source for TarSource {
    fn format(&self) -> &'static str {
        "tar"
    }
    fn schema(&self) -> Schema {
        Schema { payload: Payload::Bytes, labels: false, keys: false }
    }
    fn len(&self) -> usize {
        0
    }
    fn item(&self, _i: usize) -> SourceItem<'_> {
        SourceItem { key: None, label: 0, size: 0 }
    }
    fn read(&self, _i: usize) -> Result<Vec<u8>> {
        Err(Error::Config("unsupported".into()))
    }
}
