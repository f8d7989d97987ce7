//! Civil dates without a date crate, in one place: day numbers (Howard
//! Hinnant's algorithms), the `YYYY-MM-DDTHH:MM:SSZ` form the Web API
//! writes, and the parsers the store, filters, webhooks and change tracking
//! share. Imports nothing from the rest of the emulator.

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_datetime(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` with `Z` or `±HH:MM`.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |t: &str| t.parse::<i64>().ok();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y = num(parts.next()?)?;
    let m = num(parts.next()?)?;
    let d = num(parts.next()?)?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) * 86_400;
    if let Some(t) = time {
        let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, o) = t.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o.get(1..)?.split_once(':')?;
            (c, sign * (num(oh)? * 3600 + num(om)? * 60))
        } else {
            (t, 0)
        };
        let mut hms = clock.split(':');
        let h = num(hms.next()?)?;
        let mi = num(hms.next()?)?;
        let sec = match hms.next() {
            Some(x) => x.split('.').next().and_then(num)?,
            None => 0,
        };
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..61).contains(&sec) {
            return None;
        }
        secs += h * 3600 + mi * 60 + sec - offset;
    }
    Some(secs)
}

/// `2025-01-01T00:00:00Z` or `…00.123Z` → milliseconds since the epoch.
/// Only the UTC forms the Web API writes; anything else is not a date.
pub fn iso_to_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || !s.ends_with('Z')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = s.get(19..s.len() - 1)?;
    let ms = match frac {
        "" => 0,
        f if f.starts_with('.') && f.len() >= 2 && f.len() <= 8 => {
            let digits = f.get(1..)?;
            if !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{digits:0<3}");
            padded.get(..3)?.parse::<i64>().ok()?
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    // Both are in range (checked above).
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let s = parse_datetime("2024-02-29T13:05:09Z").unwrap();
        assert_eq!(format_datetime(s), "2024-02-29T13:05:09Z");
        assert_eq!(
            parse_datetime("2024-02-29").unwrap() + 13 * 3600 + 5 * 60 + 9,
            s
        );
        assert_eq!(parse_datetime("2024-02-29T15:05:09+02:00"), Some(s));
        assert!(parse_datetime("2024-13-01").is_none());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_to_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            iso_to_millis("2025-01-01T00:00:00Z"),
            Some(1_735_689_600_000)
        );
        assert_eq!(
            iso_to_millis("2025-01-01T00:00:00.5Z"),
            Some(1_735_689_600_500)
        );
        assert_eq!(iso_to_millis("2000-02-29T12:00:00Z"), Some(951_825_600_000));
        for bad in [
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00+01:00",
            "Ana",
            "2025-01-01T00:00:00.Z",
        ] {
            assert_eq!(iso_to_millis(bad), None, "{bad}");
        }
    }
}
