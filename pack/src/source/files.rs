//! A plain directory of files (text documents, blobs): one record per file,
//! keyed by its relative path, no labels.

use std::path::Path;

use super::walk::{WalkedFile, read_file, read_file_into, walk_files};
use super::{Source, SourceItem};
use crate::error::Result;
use crate::manifest::{Payload, Schema};

/// Extensions whose files are taken to be UTF-8 text.
const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "md", "json", "jsonl", "csv", "tsv", "xml", "html", "htm"];

/// Every regular file under a directory, recursively, sorted by path.
///
/// The payload kind is [`Payload::Text`] when every file has a text
/// extension (`txt`, `md`, `json`, ...); the packer then checks that each
/// is UTF-8 (choose [`Payload::Bytes`] with
/// [`PackOptionsBuilder::payload`](crate::PackOptionsBuilder::payload) to
/// pack other encodings). Otherwise it is [`Payload::Bytes`]. Symlinks are
/// followed; an entry that cannot be packed (a dangling link, a link loop,
/// a FIFO, a file over the record limit) is an error naming it.
#[derive(Debug)]
pub struct FilesSource {
    files: Vec<WalkedFile>,
    text: bool,
}

impl FilesSource {
    /// Lists the files under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let files = walk_files(root, |_| true)?;
        let text = !files.is_empty()
            && files.iter().all(|f| {
                Path::new(&f.rel)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| TEXT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            });
        Ok(FilesSource { files, text })
    }
}

impl Source for FilesSource {
    fn format(&self) -> &'static str {
        "files"
    }

    fn schema(&self) -> Schema {
        Schema { payload: if self.text { Payload::Text } else { Payload::Bytes }, labels: false, keys: true }
    }

    fn len(&self) -> usize {
        self.files.len()
    }

    fn item(&self, i: usize) -> SourceItem<'_> {
        let f = &self.files[i];
        SourceItem { key: Some(&f.rel), label: 0, size: f.size }
    }

    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let f = &self.files[i];
        read_file(&f.path, f.size)
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        read_file_into(&self.files[i].path, out)
    }

    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        Some((&self.files[i].path, 0))
    }
}
