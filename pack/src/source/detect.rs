//! Choosing a source format: named by the user, or detected from the path.

use std::path::{Path, PathBuf};

use super::imagefolder::is_image;
use super::walk::{not_regular, sorted_entries};
use super::{
    FfRecordSource, FilesSource, ImageFolderSource, JsonLinesSource, Source, TarSource, TfRecordSource,
};
use crate::error::{Error, Result};

/// The source formats `ringfeed pack` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceFormat {
    /// `root/<class>/<image>`, labels from sorted class names.
    ImageFolder,
    /// Any directory of files, one record per file.
    Files,
    /// WebDataset tar shards (a `.tar` file or a directory of them).
    Tar,
    /// TFRecord files (a file or a directory of `.tfrecord`/`.tfrec` files).
    TfRecord,
    /// FFRecord files (a file or a directory of `.ffr` files).
    FfRecord,
    /// JSON lines (a `.jsonl` file or a directory of them), one record per line.
    JsonLines,
}

impl std::str::FromStr for SourceFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "imagefolder" => SourceFormat::ImageFolder,
            "files" => SourceFormat::Files,
            "tar" | "webdataset" | "wds" => SourceFormat::Tar,
            "tfrecord" => SourceFormat::TfRecord,
            "ffrecord" => SourceFormat::FfRecord,
            "jsonl" | "ndjson" => SourceFormat::JsonLines,
            other => {
                return Err(Error::Config(format!(
                    "unknown source format {other:?}; expected imagefolder, files, tar, tfrecord, ffrecord or jsonl"
                )));
            }
        })
    }
}

fn ext_of(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

fn format_of_ext(ext: &str) -> Option<SourceFormat> {
    match ext {
        "tar" => Some(SourceFormat::Tar),
        "tfrecord" | "tfrec" | "tfrecords" => Some(SourceFormat::TfRecord),
        "ffr" | "ffrecord" => Some(SourceFormat::FfRecord),
        "jsonl" | "ndjson" => Some(SourceFormat::JsonLines),
        _ => None,
    }
}

impl SourceFormat {
    /// Guesses the format of `path`: a container file by its extension; a
    /// directory whose files all share a container extension as that
    /// format; a directory of class directories holding images as
    /// ImageFolder; any other directory as plain files.
    pub fn detect(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io("open", path, e))?;
        if meta.is_file() {
            return format_of_ext(&ext_of(path)).ok_or_else(|| {
                Error::Config(format!(
                    "cannot tell the format of {} from its extension; pass --format",
                    path.display()
                ))
            });
        }
        let entries = sorted_entries(path)?;
        let files: Vec<&PathBuf> = entries.iter().map(|(_, p)| p).filter(|p| p.is_file()).collect();
        if let Some(first) = files.first()
            && let Some(fmt) = format_of_ext(&ext_of(first))
            && files.iter().all(|p| format_of_ext(&ext_of(p)) == Some(fmt))
        {
            return Ok(fmt);
        }
        let dirs: Vec<&PathBuf> = entries.iter().map(|(_, p)| p).filter(|p| p.is_dir()).collect();
        if files.is_empty() && !dirs.is_empty() && dirs.iter().all(|d| holds_image(d)) {
            return Ok(SourceFormat::ImageFolder);
        }
        Ok(SourceFormat::Files)
    }
}

fn holds_image(dir: &Path) -> bool {
    sorted_entries(dir).is_ok_and(|es| es.iter().any(|(n, p)| is_image(n) && p.is_file()))
}

/// Opens `path` as a source of the given format (detected when `None`).
///
/// The box is itself a [`Source`]: hand it to [`pack`](crate::pack) as it
/// is.
///
/// ```
/// # fn main() -> ringfeed_pack::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
/// let source = ringfeed_pack::open_source(dir.path(), None)?;
/// assert_eq!((source.format(), source.len()), ("files", 1));
/// # Ok(())
/// # }
/// ```
pub fn open_source(path: impl AsRef<Path>, format: Option<SourceFormat>) -> Result<Box<dyn Source>> {
    let path = path.as_ref();
    let format = match format {
        Some(f) => f,
        None => SourceFormat::detect(path)?,
    };
    Ok(match format {
        SourceFormat::ImageFolder => Box::new(ImageFolderSource::open(path)?),
        SourceFormat::Files => Box::new(FilesSource::open(path)?),
        SourceFormat::Tar => Box::new(TarSource::open(path)?),
        SourceFormat::TfRecord => Box::new(TfRecordSource::open(path)?),
        SourceFormat::FfRecord => Box::new(FfRecordSource::open(path)?),
        SourceFormat::JsonLines => Box::new(JsonLinesSource::open(path)?),
    })
}

/// The container files of a source path: the file itself, or the files of
/// a directory with one of `exts`, sorted (symlinks followed; one with
/// such a name that is not a readable regular file is an error).
pub(crate) fn container_files(path: &Path, exts: &[&str]) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("open", path, e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for (_, p) in sorted_entries(path)? {
        if !exts.contains(&ext_of(&p).as_str()) {
            continue;
        }
        // The walk's rule: an entry the source would read but cannot (a
        // dangling link, a FIFO, a directory) is an error naming it.
        let meta = std::fs::metadata(&p).map_err(|e| Error::io("follow symlink", &p, e))?;
        if !meta.is_file() {
            return Err(not_regular(&p, &meta));
        }
        files.push(p);
    }
    if files.is_empty() {
        return Err(Error::Config(format!("{} holds no {} files", path.display(), exts.join("/"))));
    }
    Ok(files)
}
