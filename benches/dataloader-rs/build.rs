// Exposes the resolved versions of the crates named in the JSON "version"
// field, read from this package's own Cargo.lock.
use std::path::Path;

fn main() {
    let lock = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (name, var) in [
        ("dataloader-rs", "DLRS_VERSION"),
        ("image", "IMAGE_VERSION"),
        ("fast_image_resize", "FIR_VERSION"),
        ("zune-jpeg", "ZUNE_JPEG_VERSION"),
        ("ndarray", "NDARRAY_VERSION"),
    ] {
        let version = text
            .split("[[package]]")
            .find_map(|block| {
                let mut lines = block.lines().map(str::trim);
                let n = lines.clone().find_map(|l| l.strip_prefix("name = "))?;
                if n.trim_matches('"') != name {
                    return None;
                }
                lines
                    .find_map(|l| l.strip_prefix("version = "))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        println!("cargo:rustc-env={var}={version}");
    }
}
