//! Quantities written for people: bytes in binary units, and decimals without trailing
//! zeros.
//!
//! One implementation for the scheduler's messages (`1.5 GiB`) and the CLI's output, which
//! prints memory as Docker does (`7.523GiB`): the two differ only in precision and
//! spacing, so both are parameters here rather than two copies of the loop. It lives in
//! the manager because the CLI depends on the manager, not the other way round.

/// Binary units, each 1024 of the one before.
const BYTE_UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// `bytes` in the largest binary unit that keeps the number at least 1 (up to PiB), with
/// at most `decimals` decimals and `separator` before the unit: `format_bytes(1536, 1, " ")`
/// is `1.5 KiB`, `format_bytes(512, 3, "")` is `512B`. A negative count reads as 0.
pub fn format_bytes(bytes: i64, decimals: usize, separator: &str) -> String {
    let bytes = bytes.max(0);
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < BYTE_UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let number = if unit == 0 {
        bytes.to_string()
    } else {
        trim_decimals(value, decimals)
    };
    format!("{number}{separator}{}", BYTE_UNITS[unit])
}

/// `v` with at most `decimals` decimals, without trailing zeros (nor a trailing point).
pub fn trim_decimals(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_take_the_largest_unit_that_keeps_at_least_one() {
        const KIB: i64 = 1024;
        let cases: &[(i64, usize, &str, &str)] = &[
            (0, 1, " ", "0 B"),
            (1023, 1, " ", "1023 B"),
            (KIB, 1, " ", "1 KiB"),
            (3 * KIB / 2, 1, " ", "1.5 KiB"),
            (7_704 * KIB * KIB, 3, "", "7.523GiB"),
            (7_704 * KIB * KIB, 1, " ", "7.5 GiB"),
            (2 * KIB.pow(5), 1, " ", "2 PiB"),
            (3 * KIB.pow(6), 1, " ", "3072 PiB"),
            (-1, 3, "", "0B"),
        ];
        for (bytes, decimals, separator, want) in cases {
            assert_eq!(format_bytes(*bytes, *decimals, separator), *want, "{bytes}");
        }
    }

    #[test]
    fn decimals_lose_their_trailing_zeros() {
        assert_eq!(trim_decimals(1.5, 3), "1.5");
        assert_eq!(trim_decimals(2.0, 3), "2");
        assert_eq!(trim_decimals(1.04, 1), "1");
        assert_eq!(trim_decimals(12.0, 0), "12");
    }
}
