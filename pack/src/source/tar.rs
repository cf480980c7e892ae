//! WebDataset tar shards: consecutive members sharing a key form a sample,
//! grouped exactly as webdataset's `tariterators.group_by_keys` does.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::detect::container_files;
use super::imagefolder::IMAGE_EXTENSIONS;
use super::{Source, SourceItem, read_range};
use crate::error::{Error, Result};
use crate::format::MAX_RECORD_LEN;
use crate::manifest::{Payload, Schema};
use crate::parts::join_parts;

/// Tar block size: headers and member data are padded to it.
const BLOCK: u64 = 512;
/// A label member longer than this is not a decimal integer; refuse it
/// before reading it.
const MAX_LABEL_LEN: u64 = 256;

/// A member's data in its tar file.
#[derive(Debug, Clone, Copy)]
struct Member {
    offset: u64,
    len: u64,
}

#[derive(Debug)]
struct Sample {
    file: u32,
    key: Box<str>,
    label: i64,
    /// Index of the first of this sample's members in `TarSource::members`.
    first: usize,
    /// Payload size: the member, or the joined multipart record.
    size: u64,
}

/// What every sample must look like: the first sample's shape.
#[derive(Debug)]
struct Shape {
    key: String,
    exts: Vec<String>,
    labelled: bool,
}

/// A sample being collected from consecutive members.
#[derive(Debug)]
struct Group {
    key: String,
    /// Header offset of the first member, for error messages.
    at: u64,
    members: Vec<(String, Member)>,
    label: Option<i64>,
}

/// Samples of WebDataset tar shards: a `.tar` file or a directory of them
/// (sorted by name).
///
/// Members are grouped like webdataset does: the key is the path up to the
/// first dot of the base name, the extension (lower-cased) the rest;
/// consecutive members with the same key form a sample, and samples never
/// span shards. Members without an extension, non-regular members and
/// `__meta__` entries are skipped. A `cls` or `label` member holds the
/// sample's integer label (all samples have one, or none does). Every
/// sample must have the same, non-empty set of other members: when that is
/// one member, the payload is its bytes (an image, text or bytes by
/// extension); otherwise a multipart record of the members in sorted
/// extension order. Keys are stored.
#[derive(Debug)]
pub struct TarSource {
    files: Vec<(PathBuf, File)>,
    samples: Vec<Sample>,
    members: Vec<Member>,
    /// Sorted member extensions (labels excluded), the same for all samples.
    parts: Vec<String>,
    labelled: bool,
}

impl TarSource {
    /// Opens a tar shard, or every `.tar` file in directory `path`, and
    /// lists their samples, reading only headers and label members.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut src = TarSource {
            files: Vec::new(),
            samples: Vec::new(),
            members: Vec::new(),
            parts: Vec::new(),
            labelled: false,
        };
        let mut shape = None;
        for p in container_files(path, &["tar"])? {
            let file = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
            let idx = u32::try_from(src.files.len())
                .map_err(|_| Error::Config(format!("{} holds too many files", path.display())))?;
            scan(&file, &p, idx, &mut src, &mut shape)?;
            src.files.push((p, file));
        }
        if let Some(shape) = shape {
            src.parts = shape.exts;
            src.labelled = shape.labelled;
        }
        Ok(src)
    }

    fn payload(&self) -> Payload {
        match self.parts.as_slice() {
            [ext] if IMAGE_EXTENSIONS.contains(&ext.as_str()) => Payload::Image,
            [ext] if ext == "txt" || ext == "json" => Payload::Text,
            [_] => Payload::Bytes,
            // No samples: nothing to describe.
            [] => Payload::Bytes,
            parts => Payload::Multipart { parts: parts.to_vec() },
        }
    }
}

/// Reads the headers of one tar file, grouping its members into samples.
fn scan(file: &File, path: &Path, idx: u32, src: &mut TarSource, shape: &mut Option<Shape>) -> Result<()> {
    let file_len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let mut archive = tar::Archive::new(file);
    let entries = archive.entries_with_seek().map_err(|e| tar_err(path, 0, e))?;
    // Where the next header starts: where a failed header read points.
    let mut next = 0u64;
    let mut group: Option<Group> = None;
    for entry in entries {
        let entry = entry.map_err(|e| tar_err(path, next, e))?;
        let at = entry.raw_header_position();
        let (offset, len) = (entry.raw_file_position(), entry.size());
        // The tar crate seeks over data, so a cut-off member goes unnoticed
        // unless checked against the file size.
        let end = offset.checked_add(len).filter(|&e| e <= file_len).ok_or_else(|| {
            Error::corrupt(
                path,
                at,
                format!("{len}-byte member runs past the end of the file (truncated file?)"),
            )
        })?;
        next = end.next_multiple_of(BLOCK);
        let raw_name = entry.path_bytes();
        match entry.header().as_bytes()[156] {
            // Regular, old-style regular (a directory when its name ends in
            // '/', as tarfile decides) and contiguous files.
            b'0' | b'7' => {}
            0 if !raw_name.ends_with(b"/") => {}
            b'S' => {
                return Err(Error::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!("member at byte {at} is a GNU sparse file"),
                });
            }
            _ => continue,
        }
        let name = std::str::from_utf8(&raw_name)
            .map_err(|_| Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("member name at byte {at} is not UTF-8"),
            })?
            .to_string();
        if is_meta(&name) {
            continue;
        }
        let Some((key, ext)) = base_plus_ext(&name) else { continue };
        let ext = ext.to_lowercase();
        if group.as_ref().is_none_or(|g| g.key != key) {
            if let Some(g) = group.take() {
                push_sample(src, shape, path, idx, g)?;
            }
            group = Some(Group { key: key.to_string(), at, members: Vec::new(), label: None });
        }
        let g = group.as_mut().expect("group started above");
        let dup = |what: &str| {
            Error::corrupt(path, at, format!("member {name:?} repeats the {what} of sample {key:?}"))
        };
        if ext == "cls" || ext == "label" {
            if g.label.is_some() {
                return Err(dup("label"));
            }
            g.label = Some(parse_label(file, path, at, offset, len, &name)?);
        } else {
            if g.members.iter().any(|(e, _)| *e == ext) {
                return Err(dup(&format!("extension {ext:?}")));
            }
            g.members.push((ext, Member { offset, len }));
        }
    }
    if let Some(g) = group.take() {
        push_sample(src, shape, path, idx, g)?;
    }
    // tarfile accepts a missing end-of-archive block, but a copy cut off at
    // a member boundary looks exactly like that: demand the marker.
    if file_len.saturating_sub(next) < BLOCK {
        return Err(Error::corrupt(
            path,
            next,
            "archive ends without its end-of-archive block (truncated file?)",
        ));
    }
    Ok(())
}

/// Checks a finished group against the first sample and stores it.
fn push_sample(
    src: &mut TarSource,
    shape: &mut Option<Shape>,
    path: &Path,
    idx: u32,
    mut g: Group,
) -> Result<()> {
    g.members.sort_by(|a, b| a.0.cmp(&b.0));
    let exts: Vec<&str> = g.members.iter().map(|(e, _)| e.as_str()).collect();
    let shape = shape.get_or_insert_with(|| Shape {
        key: g.key.clone(),
        exts: exts.iter().map(|e| e.to_string()).collect(),
        labelled: g.label.is_some(),
    });
    let bad = |why: String| Error::corrupt(path, g.at, format!("sample {:?} {why}", g.key));
    if exts.is_empty() {
        return Err(bad("has no members besides its label".into()));
    }
    if exts != shape.exts {
        return Err(bad(format!(
            "has members {exts:?} but sample {:?} has {:?}; every sample needs the same members",
            shape.key, shape.exts
        )));
    }
    if g.label.is_some() != shape.labelled {
        let (has, lacks) = if shape.labelled { ("lacks", "has") } else { ("has", "lacks") };
        return Err(bad(format!("{has} a cls/label member but sample {:?} {lacks} one", shape.key)));
    }
    let data: u64 = g.members.iter().map(|(_, m)| m.len).sum();
    let size = if exts.len() == 1 { data } else { 4 + 4 * exts.len() as u64 + data };
    if size > MAX_RECORD_LEN {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "sample {:?} at byte {} is {size} bytes; the pack format's limit is {MAX_RECORD_LEN}",
                g.key, g.at
            ),
        });
    }
    src.samples.push(Sample {
        file: idx,
        key: g.key.into_boxed_str(),
        label: g.label.unwrap_or(0),
        first: src.members.len(),
        size,
    });
    src.members.extend(g.members.into_iter().map(|(_, m)| m));
    Ok(())
}

/// Reads a `cls`/`label` member: a decimal integer, as webdataset's
/// `int(value)` decodes it.
fn parse_label(file: &File, path: &Path, at: u64, offset: u64, len: u64, name: &str) -> Result<i64> {
    let bad = |why: String| Error::corrupt(path, at, format!("label member {name:?} {why}"));
    if len > MAX_LABEL_LEN {
        return Err(bad(format!("is {len} bytes, too long for an integer")));
    }
    let raw = read_range(file, path, offset, len)?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| bad(format!("holds {:?}, not a decimal integer", String::from_utf8_lossy(&raw))))
}

/// Maps a tar crate error: format errors carry no OS error code.
fn tar_err(path: &Path, offset: u64, e: std::io::Error) -> Error {
    if e.raw_os_error().is_some() {
        Error::io_at("read", path, offset, e)
    } else {
        Error::corrupt(path, offset, format!("bad tar header: {e}"))
    }
}

/// webdataset's meta-entry filter in `tar_file_iterator`: `__x__` names
/// and anything matching `__[^/]*__($|/)` are skipped.
fn is_meta(name: &str) -> bool {
    let dunder = |s: &str| s.len() >= 4 && s.starts_with("__") && s.ends_with("__");
    let first = match name.split_once('/') {
        Some((first, _)) => first,
        // Python's `$` also matches before a final newline.
        None => name.strip_suffix('\n').unwrap_or(name),
    };
    (!name.contains('/') && name.starts_with("__") && name.ends_with("__")) || dunder(first)
}

/// webdataset's `base_plus_ext`: the regex `^((?:.*/|)[^.]+)[.]([^/]*)$`
/// splitting a name into (key, extensions), emulated with its backtracking
/// order, because the regex has corner cases a plain "split the base name
/// at its first dot" misses: `dir/.x` gives key `dir/`, `a.b/.x` none.
fn base_plus_ext(name: &str) -> Option<(&str, &str)> {
    // `[^.]+` starts right after a '/' that `.*` can reach (it stops at a
    // newline), the last such slash first, or at the start of the name.
    let reach = name.find('\n').unwrap_or(name.len());
    let starts = name[..reach].rmatch_indices('/').map(|(p, _)| p + 1).chain(std::iter::once(0));
    for s in starts {
        let Some(d) = name[s..].find('.').map(|d| s + d) else { continue };
        if d > s && !name[d + 1..].contains('/') {
            return Some((&name[..d], &name[d + 1..]));
        }
    }
    None
}

impl Source for TarSource {
    fn format(&self) -> &'static str {
        "tar"
    }

    fn schema(&self) -> Schema {
        Schema { payload: self.payload(), labels: self.labelled, keys: true }
    }

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn item(&self, i: usize) -> SourceItem<'_> {
        let s = &self.samples[i];
        SourceItem { key: Some(&s.key), label: s.label, size: s.size }
    }

    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let s = &self.samples[i];
        let (path, file) = &self.files[s.file as usize];
        let members = &self.members[s.first..s.first + self.parts.len()];
        if let [m] = members {
            return read_range(file, path, m.offset, m.len);
        }
        let data =
            members.iter().map(|m| read_range(file, path, m.offset, m.len)).collect::<Result<Vec<_>>>()?;
        Ok(join_parts(&data.iter().map(Vec::as_slice).collect::<Vec<_>>()))
    }

    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        let s = &self.samples[i];
        let offset = self.members.get(s.first).map_or(0, |m| m.offset);
        Some((&self.files[s.file as usize].0, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_plus_ext_matches_webdataset() {
        // Outputs of webdataset 1.0.2 `tariterators.base_plus_ext`.
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("a.jpg", Some(("a", "jpg"))),
            ("dir/s0.seg.png", Some(("dir/s0", "seg.png"))),
            ("train.v1/s0", None),
            ("train.v1/s0.cls", Some(("train.v1/s0", "cls"))),
            ("dir/.x", Some(("dir/", "x"))),
            ("a.b/.x", None),
            (".x", None),
            ("x", None),
            ("x.", Some(("x", ""))),
            ("a/b/c.d.e", Some(("a/b/c", "d.e"))),
            ("a.b/c", None),
            ("x.y\n/c.d", None),
            ("a\nb/c.d", Some(("a\nb/c", "d"))),
            ("d1/d2/.hidden.txt", Some(("d1/d2/", "hidden.txt"))),
            ("a..b", Some(("a", ".b"))),
            ("/abs.jpg", Some(("/abs", "jpg"))),
            ("dir/", None),
            ("dir/a.b/.c", None),
        ];
        for (name, want) in cases {
            assert_eq!(base_plus_ext(name), *want, "{name:?}");
        }
    }

    #[test]
    fn meta_entries_are_skipped() {
        for name in ["__meta__", "___", "__a.b__", "__x__/y.txt", "__a__\n"] {
            assert!(is_meta(name), "{name:?}");
        }
        for name in ["__a", "a__", "x/__a__", "__a_/b.c", "_a_.txt"] {
            assert!(!is_meta(name), "{name:?}");
        }
    }
}
