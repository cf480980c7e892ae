//! Parsing and printing byte sizes.

/// Parses `1048576`, `64K`, `256M`, `1G`, `1.5G` (binary multiples) into
/// at least 1 byte; see [`parse_size_or_zero`].
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    match parse_size_or_zero(s)? {
        0 => Err(format!("size {s:?} must be at least 1 byte")),
        n => Ok(n),
    }
}

/// Parses a byte size that may be 0. Exact: integer arithmetic, fractions
/// rounded down to whole bytes, and a size past `u64::MAX` bytes (16 EiB)
/// is an error, not a silently saturated value.
pub(crate) fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let not_a_size = || format!("{s:?} is not a size (e.g. 268435456 or 256M)");
    let (num, mult): (&str, u128) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'B' => 0,
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size suffix in {s:?}; use K, M, G or T")),
            };
            (&t[..i], 1 << shift)
        }
        _ => (t, 1),
    };
    let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) {
        return Err(not_a_size());
    }
    let too_large = || format!("size {s:?} is too large (at most {} bytes)", u64::MAX);
    // Past 38 digits a number overflows u128 on its own.
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(mult).ok_or_else(too_large)?;
    // Digits past the 18th cannot add a whole byte with a multiplier of at
    // most 2^40.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let scale = 10u128.pow(fraction.len() as u32);
        let part: u128 = fraction.parse().map_err(|_| not_a_size())?;
        bytes += part * mult / scale;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Formats bytes with a decimal unit (MB = 10^6 bytes), as throughput is
/// usually quoted.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("abc").is_err());
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size(" 2T "), Ok(2 << 40));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_size_or_zero("0"), Ok(0));
        for bad in ["", ".5", "-1", "1e9", "NaN", "inf", "1..2", "1.2.3K", "K"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes_past_u64_are_refused_not_saturated() {
        for huge in
            ["18446744073709551616", "16777216T", "99999999999999999999999999999999999999999", "20000000000G"]
        {
            let err = parse_size(huge).unwrap_err();
            assert!(err.contains("too large (at most 18446744073709551615 bytes)"), "{huge}: {err}");
        }
        assert_eq!(parse_size("16777215.999T"), Ok((16_777_215 << 40) + (999u64 << 40) / 1000));
    }

    #[test]
    fn bytes_print() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
