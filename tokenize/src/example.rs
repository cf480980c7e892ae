//! Just enough of the protocol buffer wire format to take one bytes
//! feature out of a serialized `tf.train.Example` (TFRecord corpora store
//! text that way): `Example { Features features = 1 }`, `Features {
//! map<string, Feature> feature = 1 }`, `Feature { BytesList bytes_list =
//! 1; ... }`, `BytesList { repeated bytes value = 1 }`.

/// The first value of bytes feature `name` in `example`; `None` when the
/// bytes are not such an Example (malformed input is `None`, never a panic).
pub(crate) fn bytes_feature<'a>(example: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let features = fields(example).find(|&(n, _)| n == 1)?.1;
    for (n, entry) in fields(features) {
        if n != 1 {
            continue;
        }
        let mut key = None;
        let mut value = None;
        for (m, v) in fields(entry) {
            match m {
                1 => key = Some(v),
                2 => value = Some(v),
                _ => {}
            }
        }
        if key == Some(name.as_bytes()) {
            let bytes_list = fields(value?).find(|&(m, _)| m == 1)?.1;
            return fields(bytes_list).find(|&(m, _)| m == 1).map(|(_, v)| v);
        }
    }
    None
}

/// The length-delimited fields of a message, as (field number, bytes);
/// other wire types are skipped; iteration stops at the first malformed
/// byte.
fn fields(mut msg: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    std::iter::from_fn(move || {
        loop {
            let key = varint(&mut msg)?;
            match key & 7 {
                0 => {
                    varint(&mut msg)?;
                }
                1 => msg = msg.get(8..)?,
                5 => msg = msg.get(4..)?,
                2 => {
                    let len = usize::try_from(varint(&mut msg)?).ok()?;
                    let (v, rest) = (msg.get(..len)?, msg.get(len..)?);
                    msg = rest;
                    return Some((key >> 3, v));
                }
                _ => return None,
            }
        }
    })
}

fn varint(msg: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = msg.split_first()?;
        *msg = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, v: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8];
        let mut len = v.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len > 0 { b | 0x80 } else { b });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(v);
        out
    }

    /// An Example with bytes features `(name, value)`, plus an int64 one.
    fn example(features: &[(&str, &[u8])]) -> Vec<u8> {
        let mut map = Vec::new();
        for (name, value) in features {
            let feature = field(1, &field(1, value));
            map.extend(field(1, &[field(1, name.as_bytes()), field(2, &feature)].concat()));
        }
        let ints = field(3, &[0x0a, 0x01, 0x05]); // Int64List packed [5]
        map.extend(field(1, &[field(1, b"n"), field(2, &ints)].concat()));
        field(1, &map)
    }

    #[test]
    fn the_named_bytes_feature_is_found() {
        let long = "x".repeat(300); // a two-byte length varint
        let ex = example(&[("id", b"42"), ("text", long.as_bytes())]);
        assert_eq!(bytes_feature(&ex, "text"), Some(long.as_bytes()));
        assert_eq!(bytes_feature(&ex, "id"), Some(&b"42"[..]));
        assert_eq!(bytes_feature(&ex, "missing"), None);
        assert_eq!(bytes_feature(&ex, "n"), None, "an int64 feature has no bytes");
    }

    #[test]
    fn other_bytes_are_none_never_a_panic() {
        let ex = example(&[("text", b"hello")]);
        for cut in 0..ex.len() {
            let _ = bytes_feature(&ex[..cut], "text");
        }
        assert_eq!(bytes_feature(b"plain text, not a protocol buffer", "text"), None);
        assert_eq!(bytes_feature(&[0xff; 12], "text"), None);
        assert_eq!(bytes_feature(&[], "text"), None);
    }
}
