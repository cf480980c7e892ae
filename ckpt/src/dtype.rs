//! The element types of the safetensors format.

use std::fmt;
use std::str::FromStr;

/// A tensor's element type, as named in a safetensors header.
///
/// Every type of the format as of safetensors 0.6 is known, including the
/// sub-byte floats (`F4`, `F6_*`), whose tensors must fill whole bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte.
    Bool,
    /// 4-bit float (e2m1), two per byte.
    F4,
    /// 6-bit float, e2m3.
    F6E2M3,
    /// 6-bit float, e3m2.
    F6E3M2,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, e5m2.
    F8E5M2,
    /// 8-bit float, e4m3.
    F8E4M3,
    /// 8-bit exponent-only float (MX scales).
    F8E8M0,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// Complex of two `F32`.
    C64,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

const ALL: [(Dtype, &str, u32); 20] = [
    (Dtype::Bool, "BOOL", 8),
    (Dtype::F4, "F4", 4),
    (Dtype::F6E2M3, "F6_E2M3", 6),
    (Dtype::F6E3M2, "F6_E3M2", 6),
    (Dtype::U8, "U8", 8),
    (Dtype::I8, "I8", 8),
    (Dtype::F8E5M2, "F8_E5M2", 8),
    (Dtype::F8E4M3, "F8_E4M3", 8),
    (Dtype::F8E8M0, "F8_E8M0", 8),
    (Dtype::I16, "I16", 16),
    (Dtype::U16, "U16", 16),
    (Dtype::F16, "F16", 16),
    (Dtype::BF16, "BF16", 16),
    (Dtype::I32, "I32", 32),
    (Dtype::U32, "U32", 32),
    (Dtype::F32, "F32", 32),
    (Dtype::C64, "C64", 64),
    (Dtype::F64, "F64", 64),
    (Dtype::I64, "I64", 64),
    (Dtype::U64, "U64", 64),
];

impl Dtype {
    /// The name in a safetensors header (`"F32"`, `"BF16"`, ...).
    pub fn name(self) -> &'static str {
        ALL.iter().find(|(d, _, _)| *d == self).map_or("?", |(_, n, _)| n)
    }

    /// Bits per element.
    pub fn bits(self) -> u32 {
        ALL.iter().find(|(d, _, _)| *d == self).map_or(0, |(_, _, b)| *b)
    }

    /// Bytes of `elements` elements, `None` when it overflows or does not
    /// fill whole bytes (sub-byte types).
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let bits = elements.checked_mul(u64::from(self.bits()))?;
        bits.is_multiple_of(8).then_some(bits / 8)
    }
}

impl FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Dtype, String> {
        ALL.iter().find(|(_, n, _)| *n == s).map(|(d, _, _)| *d).ok_or_else(|| {
            let known: Vec<&str> = ALL.iter().map(|(_, n, _)| *n).collect();
            format!("unknown dtype {s:?} (known: {})", known.join(", "))
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_are_whole_bytes() {
        for (d, name, bits) in ALL {
            assert_eq!(name.parse::<Dtype>().unwrap(), d);
            assert_eq!((d.name(), d.bits()), (name, bits));
        }
        assert!("f32".parse::<Dtype>().is_err(), "names are case-sensitive, as in the format");
        assert_eq!(Dtype::F32.bytes_for(3), Some(12));
        assert_eq!(Dtype::F4.bytes_for(3), None, "half a byte left over");
        assert_eq!(Dtype::F4.bytes_for(4), Some(2));
        assert_eq!(Dtype::F6E2M3.bytes_for(4), Some(3));
        assert_eq!(Dtype::F64.bytes_for(u64::MAX / 4), None);
    }
}
