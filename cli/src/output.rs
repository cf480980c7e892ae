//! What the commands print: stdout through [`Out`], whose every write
//! reports its error (a full disk, a closed pipe) instead of panicking or
//! being dropped, and names and paths from datasets and sources through
//! [`escaped`] / [`escaped_path`], so that a class name or file name with
//! a newline or a terminal escape sequence prints as one inert line.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Buffered stdout whose write errors become [`StdoutError`].
pub(crate) struct Out(BufWriter<io::Stdout>);

impl Out {
    pub(crate) fn new() -> Self {
        Out(BufWriter::new(io::stdout()))
    }

    /// Writes `args` and a newline; use through [`outln!`].
    pub(crate) fn line(&mut self, args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
        self.0.write_fmt(args).and_then(|()| self.0.write_all(b"\n")).map_err(StdoutError)
    }

    /// Flushes what is buffered so far (a reader waits for it).
    pub(crate) fn flush(&mut self) -> Result<(), StdoutError> {
        self.0.flush().map_err(StdoutError)
    }

    /// Flushes what is buffered: a full disk often shows only here.
    pub(crate) fn finish(mut self) -> Result<(), StdoutError> {
        self.0.flush().map_err(StdoutError)
    }
}

/// `outln!(out, "format", args...)`: one line to an [`Out`], `?`-able.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        $out.line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Stdout could not be written; exit code 2.
#[derive(Debug)]
pub(crate) struct StdoutError(pub(crate) io::Error);

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

/// `s` with every control character escaped (`\n`, `\t`, `\u{1b}`, ...);
/// printable text, non-ASCII included, is kept as it is.
pub(crate) fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path as [`escaped`] text, with bytes that are not UTF-8 as `\xNN`.
pub(crate) fn escaped_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(&escaped(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_invalid_bytes_are_escaped() {
        assert_eq!(escaped("cat"), "cat");
        assert!(matches!(escaped("chat noir"), Cow::Borrowed(_)));
        assert_eq!(escaped("a\nb\tc\u{1b}[31m"), "a\\nb\\tc\\u{1b}[31m");
        assert_eq!(escaped("é\u{7f}"), "é\\u{7f}");
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"dir/\xffname\n"));
        assert_eq!(escaped_path(path), "dir/\\xffname\\n");
    }

    #[test]
    fn a_full_device_is_an_error() {
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else { return };
        let mut w = BufWriter::new(full);
        let result = writeln!(w, "x").and_then(|()| w.flush()).map_err(StdoutError);
        let message = result.unwrap_err().to_string();
        assert!(message.starts_with("cannot write to stdout: No space left on device"), "{message}");
    }
}
