//! Units in config values: durations (`250ms`, `1s`, `2m`) and sizes (`16MiB`), parsed
//! from and formatted back to the same compact form.

use std::time::Duration;

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000_000_000;

/// Duration units, longest suffix first so `ms` is not read as `m`.
const DURATION_UNITS: [(&str, u128); 4] =
    [("ms", NANOS_PER_MS), ("s", NANOS_PER_S), ("m", 60 * NANOS_PER_S), ("h", 3600 * NANOS_PER_S)];

/// Size units (case-insensitive), longest suffix first.
const SIZE_UNITS: [(&str, u128); 9] = [
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("b", 1),
];

/// Binary units used when formatting sizes, largest first.
const SIZE_FORMAT_UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`, `0s`. A unit is required.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    if number.is_empty() {
        return Err(format!("{text:?} is not a duration: expected a number and a unit, like \"250ms\""));
    }
    let Some(&(_, scale)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
        let what = if unit.is_empty() { "has no unit" } else { "has an unknown unit" };
        return Err(format!("{text:?} {what}: use ms, s, m or h, like \"250ms\""));
    };
    let nanos = scaled(number, scale).ok_or_else(|| format!("{text:?} is not a duration"))?;
    let secs = u64::try_from(nanos / NANOS_PER_S).map_err(|_| format!("{text:?} is too long"))?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_S) as u32))
}

/// Parses `16MiB`, `512KiB`, `1GiB`, `16MB`, `4096B`, `4096` (bytes). Units are
/// case-insensitive; `KiB`/`MiB`/... are powers of 1024, `kB`/`MB`/... powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    if number.is_empty() {
        return Err(format!("{text:?} is not a size: expected a number and a unit, like \"16MiB\""));
    }
    let unit = unit.to_ascii_lowercase();
    let scale = if unit.is_empty() {
        1
    } else {
        match SIZE_UNITS.iter().find(|(u, _)| *u == unit) {
            Some(&(_, scale)) => scale,
            None => return Err(format!("{text:?} has an unknown unit: use B, KiB, MiB, GiB, kB, MB or GB")),
        }
    };
    let bytes = scaled(number, scale).ok_or_else(|| format!("{text:?} is not a size"))?;
    u64::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
}

/// Short human form, the inverse of [`parse_duration`]: whole hours, minutes or seconds
/// when exact (`1s`, `2m`, `1h`), else milliseconds below 10 s (`0ms`, `87ms`,
/// `1250ms`), seconds below 2 min (`12.5s`), minutes below 2 h (`2.5m`), then hours.
/// Fractions keep one decimal and are truncated, never rounded up.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let (unit, scale) = match nanos {
        n if n < 10 * NANOS_PER_S => ("ms", NANOS_PER_MS),
        n if n < 120 * NANOS_PER_S => ("s", NANOS_PER_S),
        n if n < 7200 * NANOS_PER_S => ("m", 60 * NANOS_PER_S),
        _ => ("h", 3600 * NANOS_PER_S),
    };
    let exact = DURATION_UNITS.iter().rev().find(|(_, s)| nanos != 0 && nanos % s == 0);
    match exact {
        Some(&(unit, exact)) if exact > scale => format!("{}{unit}", nanos / exact),
        _ if unit == "ms" => format!("{}ms", nanos / NANOS_PER_MS),
        _ => format!("{}{unit}", one_decimal(nanos, scale)),
    }
}

/// Short human form of a byte count: `0B`, `1023B`, `16MiB`, `1.5KiB` (one decimal,
/// truncated, for counts that are not a whole number of the unit).
pub fn format_size(bytes: u64) -> String {
    match SIZE_FORMAT_UNITS.iter().find(|(_, scale)| bytes >= *scale) {
        Some(&(unit, scale)) => format!("{}{unit}", one_decimal(bytes.into(), scale.into())),
        None => format!("{bytes}B"),
    }
}

/// `value / scale` with at most one decimal, truncated; no `.0`.
fn one_decimal(value: u128, scale: u128) -> String {
    let tenths = value * 10 / scale;
    match tenths % 10 {
        0 => format!("{}", tenths / 10),
        d => format!("{}.{d}", tenths / 10),
    }
}

/// Splits `1.5s` into (`1.5`, `s`): the leading digits and dots, then the rest.
fn split_number(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    text.split_at(end)
}

/// `number × scale` for a plain decimal (`12`, `1.5`, `.5` is rejected), exact to the
/// unit of `scale` (fractions below it are truncated); `None` if malformed or huge.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || number.ends_with('.') {
        return None;
    }
    if int.len() > 20 || frac.len() > 18 {
        return None;
    }
    let whole = int.parse::<u128>().ok()?.checked_mul(scale)?;
    let frac_value = if frac.is_empty() { 0 } else { frac.parse::<u128>().ok()? };
    let part = frac_value * scale / 10u128.pow(frac.len() as u32);
    whole.checked_add(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_parse() {
        let table = [
            ("250ms", ms(250)),
            ("1s", ms(1000)),
            ("1.5s", ms(1500)),
            ("0.25s", ms(250)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("0s", ms(0)),
            ("0ms", ms(0)),
            (" 5s ", ms(5000)),
            ("1.5ms", Duration::from_micros(1500)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_rejected() {
        let table = [
            ("", "not a duration"),
            ("250", "has no unit"),
            ("-1s", "not a duration"),
            ("1d", "unknown unit"),
            ("5 s", "unknown unit"),
            ("s", "not a duration"),
            ("1.s", "is not a duration"),
            ("1..5s", "is not a duration"),
            ("99999999999999999999h", "too long"),
        ];
        for (text, want) in table {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_parse() {
        let table = [
            ("16MiB", 16 << 20),
            ("512KiB", 512 << 10),
            ("1GiB", 1 << 30),
            ("16MB", 16_000_000),
            ("4kB", 4000),
            ("4096B", 4096),
            ("4096", 4096),
            ("0", 0),
            ("1.5KiB", 1536),
            ("16mib", 16 << 20),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn sizes_rejected() {
        let table = [
            ("", "not a size"),
            ("MiB", "not a size"),
            ("-5MiB", "not a size"),
            ("16 parsecs", "unknown unit"),
            ("16Mi", "unknown unit"),
            ("99999999999TiB", "too large"),
        ];
        for (text, want) in table {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn durations_format() {
        let table = [
            (ms(0), "0ms"),
            (ms(87), "87ms"),
            (Duration::from_micros(87_900), "87ms"),
            (ms(1000), "1s"),
            (ms(1250), "1250ms"),
            (ms(9999), "9999ms"),
            (ms(10_000), "10s"),
            (ms(12_580), "12.5s"),
            (ms(60_000), "1m"),
            (ms(90_000), "90s"),
            (ms(119_990), "119.9s"),
            (ms(120_000), "2m"),
            (ms(150_000), "2.5m"),
            (ms(3_600_000), "1h"),
            (ms(7_199_000), "119.9m"),
            (ms(9_000_000), "2.5h"),
        ];
        for (d, want) in table {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn formatted_durations_parse_back() {
        for d in [ms(0), ms(87), ms(1250), ms(12_500), ms(150_000), ms(9_000_000)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn sizes_format() {
        let table = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1KiB"),
            (1536, "1.5KiB"),
            (16 << 20, "16MiB"),
            ((16 << 20) + (1 << 19), "16.5MiB"),
            (1 << 30, "1GiB"),
            (3 << 40, "3TiB"),
        ];
        for (bytes, want) in table {
            assert_eq!(format_size(bytes), want, "{bytes}");
        }
    }
}
