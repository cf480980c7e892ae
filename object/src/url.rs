//! `s3://bucket/prefix` URLs.

use crate::error::{Error, Result};

/// True when `s` names a dataset in object storage rather than a local
/// directory (`s3://...`; write `./s3:/...` for a local directory that
/// happens to be called `s3:`).
pub fn is_object_url(s: &str) -> bool {
    s.starts_with("s3://")
}

/// A parsed `s3://bucket/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectUrl {
    pub(crate) bucket: String,
    /// Key prefix of the dataset's objects, without leading or trailing
    /// slashes (empty: the bucket's root).
    pub(crate) prefix: String,
}

impl ObjectUrl {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("{url:?} is not an object storage URL: {why}"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is empty"));
        }
        // S3's bucket naming rules, loosely: what would need escaping in a
        // host name or path is refused here rather than by the server.
        if !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
            return Err(bad("a bucket name has lowercase letters, digits, '-' and '.' only"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part.is_empty() || part == "." || part == "..") && !prefix.is_empty()
        {
            return Err(bad("the prefix has an empty, '.' or '..' component"));
        }
        Ok(ObjectUrl { bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    /// The key of object `name` under the prefix.
    pub(crate) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) }
    }

    /// The URL back, normalized (for messages and cache names).
    pub(crate) fn display(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_named() {
        let u = ObjectUrl::parse("s3://data/imagenet/train/").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("data", "imagenet/train"));
        assert_eq!(u.key("manifest.json"), "imagenet/train/manifest.json");
        assert_eq!(u.display(), "s3://data/imagenet/train");
        let root = ObjectUrl::parse("s3://data").unwrap();
        assert_eq!(root.key("m"), "m");
        for bad in ["s3://", "s3:///x", "s3://Bad/x", "s3://b/x//y", "s3://b/../y", "gs://b/x", "/local"] {
            let e = ObjectUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not an object storage URL"), "{bad}: {e}");
        }
        assert!(is_object_url("s3://b/x"));
        assert!(!is_object_url("./s3:/b/x"));
    }
}
