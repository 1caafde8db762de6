//! Sizes as storage people write them: `64K`, `1G`, `2048s` (sectors).

use std::time::Duration;

/// A size that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("size '{0}': expected a number with an optional unit (s for 512-byte sectors, K, M, G, T, P; binary)")]
pub struct BadSize(pub String);

/// Parse `text` as bytes: `4096`, `64K`, `64KiB`, `1.5G`, `2048s`.
pub fn parse_size(text: &str) -> Result<u64, BadSize> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "s" => 512,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(BadSize(text.into())),
    };
    if number.is_empty() {
        return Err(BadSize(text.into()));
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(|| BadSize(text.into()));
    }
    let value: f64 = number.parse().map_err(|_| BadSize(text.into()))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(BadSize(text.into()));
    }
    Ok(bytes as u64)
}

/// `1.5 GiB`, `64 KiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 { format!("{value} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Serialize a duration as (fractional) milliseconds.
pub fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("2048s"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999P").is_err());
        assert_eq!(format_size(65536), "64 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
    }
}
