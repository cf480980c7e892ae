//! Shared set-up for the scenarios in `tests/`, which use ringfeed as a
//! crate outside its repository does: through its public API only, with
//! the dependency lines the README gives.
//!
//! Adding a scenario: write `tests/<topic>.rs`, build its data with the
//! helpers here (`image_folder`, `pack`), and, if it needs another crate,
//! add it to `Cargo.toml` and refresh `Cargo.lock` (any cargo command
//! without `--locked`, e.g. `cargo metadata --format-version 1 >/dev/null`,
//! adds it at the versions ringfeed's own lock holds). A scenario that
//! needs libtorch starts with `#![cfg(feature = "tch")]`; `.ci/run` runs it
//! in its `tch` phase.

use std::path::Path;

use ringfeed::{Dataset, Manifest, PackOptions};

/// One image file of an [`ImageFolder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Path relative to the tree's root, as the packer stores it as the key.
    pub key: String,
    /// Index of the image's class, classes sorted by name.
    pub label: i64,
    /// The PNG file's bytes.
    pub bytes: Vec<u8>,
}

/// A torchvision ImageFolder tree, `root/<class>/<nnn>.png`, in a
/// temporary directory removed on drop.
#[derive(Debug)]
pub struct ImageFolder {
    /// The tree's root.
    pub root: tempfile::TempDir,
    /// Every image, sorted by key.
    pub images: Vec<Image>,
}

impl ImageFolder {
    /// The image stored under `key`.
    ///
    /// # Panics
    /// When there is none.
    #[must_use]
    pub fn image(&self, key: &str) -> &Image {
        self.images.iter().find(|i| i.key == key).unwrap_or_else(|| panic!("no image {key}"))
    }
}

/// Writes an ImageFolder tree of `per_class` PNG images (48×40 RGB, a
/// different pattern each) for each of `classes`.
///
/// # Panics
/// On a file-system error.
#[must_use]
pub fn image_folder(classes: &[&str], per_class: usize) -> ImageFolder {
    let root = tempfile::tempdir().expect("temporary directory");
    let mut sorted = classes.to_vec();
    sorted.sort_unstable();
    let mut images = Vec::new();
    for (label, class) in sorted.iter().enumerate() {
        std::fs::create_dir(root.path().join(class)).expect("class directory");
        for n in 0..per_class {
            let key = format!("{class}/{n:03}.png");
            let bytes = png(48, 40, (label * per_class + n) as u32);
            std::fs::write(root.path().join(&key), &bytes).expect("image file");
            images.push(Image { key, label: label as i64, bytes });
        }
    }
    images.sort_by(|a, b| a.key.cmp(&b.key));
    ImageFolder { root, images }
}

/// Packs `folder` into a fresh temporary directory with default options,
/// the format detected, as `ringfeed pack` does; checks every record reads
/// back as the file it came from.
///
/// # Panics
/// When packing fails or a record differs from its file.
#[must_use]
pub fn pack(folder: &ImageFolder) -> (tempfile::TempDir, Manifest) {
    let out = tempfile::tempdir().expect("temporary directory");
    let source = ringfeed::open_source(folder.root.path(), None).expect("open the ImageFolder");
    let options = PackOptions::builder().build().expect("default pack options");
    let manifest = ringfeed::pack(source, out.path(), &options, |_| {}).expect("pack");
    assert_eq!(manifest.records, folder.images.len() as u64);
    let dataset = Dataset::open(out.path()).expect("open the packed dataset");
    for index in 0..manifest.records {
        let record = dataset.record(index).expect("read a record");
        let image = folder.image(&record.key);
        assert_eq!(record.payload, image.bytes, "record {index} ({})", record.key);
        assert_eq!(record.label, image.label, "record {index} ({})", record.key);
    }
    (out, manifest)
}

/// A `width`×`height` RGB PNG whose pixels depend on `seed`.
///
/// # Panics
/// Never for sizes that fit in memory (encoding into a `Vec` cannot fail).
#[must_use]
pub fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..width * height * 3)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed.wrapping_mul(97)) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("PNG header");
    writer.write_image_data(&pixels).expect("PNG data");
    writer.finish().expect("PNG end");
    out
}

/// The descriptors this process has open, each as what it refers to
/// (`anon_inode:[eventfd]`, a path, …), sorted.
///
/// # Panics
/// Where `/proc/self/fd` cannot be read (not Linux).
#[must_use]
pub fn open_fds() -> Vec<String> {
    let entries: Vec<_> = std::fs::read_dir(Path::new("/proc/self/fd"))
        .expect("/proc/self/fd")
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    // read_dir's own descriptor is closed by now, so its link no longer
    // reads and it is left out.
    let mut fds: Vec<String> = entries
        .iter()
        .filter_map(|fd| std::fs::read_link(fd).ok())
        .map(|t| t.display().to_string())
        .collect();
    fds.sort();
    fds
}
