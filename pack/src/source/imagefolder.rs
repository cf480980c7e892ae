//! torchvision's ImageFolder layout: `root/<class>/<...>/<image>`.

use std::path::Path;

use super::walk::{WalkedFile, read_file, read_file_into, sorted_entries, walk_files};
use super::{Source, SourceItem};
use crate::error::{Error, Result};
use crate::manifest::{Payload, Schema};

/// Extensions torchvision's ImageFolder accepts (compared case-insensitively).
pub(crate) const IMAGE_EXTENSIONS: &[&str] =
    &["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Images under `root/<class>/`, labelled like torchvision's ImageFolder:
/// class directories sorted by name get labels `0..k`, and images within a
/// class are walked recursively in sorted order. Files with other
/// extensions are skipped; a class without images is an error, as in
/// torchvision. Symlinks are followed, class directories included;
/// entries of `root` that are not directories are ignored, and inside a
/// class an image name that cannot be packed (a dangling link, a link
/// loop, a FIFO, a file over the record limit) is an error naming it.
/// Keys are paths relative to `root`.
#[derive(Debug)]
pub struct ImageFolderSource {
    classes: Vec<String>,
    images: Vec<(WalkedFile, i64)>,
}

impl ImageFolderSource {
    /// Lists classes and images under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let mut classes = Vec::new();
        let mut images = Vec::new();
        for (name, path) in sorted_entries(root)? {
            if !path.is_dir() {
                continue;
            }
            let label = classes.len() as i64;
            let before = images.len();
            for mut f in walk_files(&path, is_image)? {
                f.rel = format!("{name}/{}", f.rel);
                images.push((f, label));
            }
            if images.len() == before {
                return Err(Error::Config(format!(
                    "class directory {} holds no images ({})",
                    path.display(),
                    IMAGE_EXTENSIONS.join(", ")
                )));
            }
            classes.push(name);
        }
        if classes.is_empty() {
            return Err(Error::Config(format!(
                "{} has no class directories: expected root/<class>/<image>",
                root.display()
            )));
        }
        Ok(ImageFolderSource { classes, images })
    }
}

pub(crate) fn is_image(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl Source for ImageFolderSource {
    fn format(&self) -> &'static str {
        "imagefolder"
    }

    fn schema(&self) -> Schema {
        Schema { payload: Payload::Image, labels: true, keys: true }
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn len(&self) -> usize {
        self.images.len()
    }

    fn item(&self, i: usize) -> SourceItem<'_> {
        let (f, label) = &self.images[i];
        SourceItem { key: Some(&f.rel), label: *label, size: f.size }
    }

    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let f = &self.images[i].0;
        read_file(&f.path, f.size)
    }

    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        Some((&self.images[i].0.path, 0))
    }

    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        read_file_into(&self.images[i].0.path, out)
    }
}
