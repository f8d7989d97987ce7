//! WCF's `/Date(ms±hhmm)/` values, as a webhook's context carries its dates.

/// A point in time from a WCF `/Date(…)/` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WcfDate {
    /// Milliseconds since the Unix epoch, UTC.
    pub millis: i64,
    /// The offset the sender was in, in minutes (informational: `millis` is
    /// already UTC).
    pub offset_minutes: Option<i32>,
}

/// Parses `/Date(1735689600000)/` and `/Date(1735689600000+0100)/` (also a
/// negative millisecond count). The milliseconds are UTC in both forms; the
/// offset only records the sender's zone. Anything else is `None`.
pub fn parse_wcf_date(s: &str) -> Option<WcfDate> {
    let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
    let (digits_end, negative) = match inner.strip_prefix('-') {
        Some(rest) => (
            1 + rest.bytes().take_while(u8::is_ascii_digit).count(),
            true,
        ),
        None => (inner.bytes().take_while(u8::is_ascii_digit).count(), false),
    };
    let (ms_text, offset_text) = inner.split_at_checked(digits_end)?;
    let digits = if negative { ms_text.get(1..)? } else { ms_text };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let magnitude: i64 = digits.parse().ok()?;
    let millis = if negative { -magnitude } else { magnitude };
    let offset_minutes = if offset_text.is_empty() {
        None
    } else {
        let (sign, hhmm) = match offset_text.split_at_checked(1)? {
            ("+", rest) => (1, rest),
            ("-", rest) => (-1, rest),
            _ => return None,
        };
        if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hours: i32 = hhmm.get(..2)?.parse().ok()?;
        let minutes: i32 = hhmm.get(2..)?.parse().ok()?;
        if hours > 14 || minutes > 59 {
            return None;
        }
        Some(sign * (hours * 60 + minutes))
    };
    // Keep to years 0000–9999 so the ISO form stays four-digit.
    const MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    if !(MIN..=MAX).contains(&millis) {
        return None;
    }
    Some(WcfDate {
        millis,
        offset_minutes,
    })
}

impl WcfDate {
    /// ISO-8601 in UTC, as the Web API writes dates: `2025-01-01T00:00:00Z`,
    /// with milliseconds only when there are some.
    pub fn to_iso(self) -> String {
        let secs = self.millis.div_euclid(1000);
        let ms = self.millis.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        if ms == 0 {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
        }
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wcf_dates_with_and_without_offsets() {
        let d = |s: &str| parse_wcf_date(s).map(WcfDate::to_iso);
        assert_eq!(d("/Date(0)/").as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            d("/Date(1735689600000)/").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        // The milliseconds are UTC; the offset does not move the instant.
        assert_eq!(
            d("/Date(1735689600000+0530)/").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            d("/Date(1735689600000-0800)/").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_wcf_date("/Date(1735689600000+0530)/")
                .unwrap()
                .offset_minutes,
            Some(330)
        );
        assert_eq!(
            parse_wcf_date("/Date(1735689600000-0800)/")
                .unwrap()
                .offset_minutes,
            Some(-480)
        );
        assert_eq!(
            d("/Date(1735689600123)/").as_deref(),
            Some("2025-01-01T00:00:00.123Z")
        );
        assert_eq!(d("/Date(-1)/").as_deref(), Some("1969-12-31T23:59:59.999Z"));
        assert_eq!(
            d("/Date(951782400000)/").as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            d("/Date(253402300799999)/").as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        for bad in [
            "/Date()/",
            "/Date(-)/",
            "/Date(12a)/",
            "/Date(1+01)/",
            "/Date(1+2400)/",
            "/Date(1*0100)/",
            "Date(1)",
            "/Date(1)",
            "/Date(99999999999999999999)/",
            "/Date(253402300800000)/",
            "/Date(1+01000)/",
            "/Date(+1)/",
            "/Date(1-)/",
            "/Date(١)/",
        ] {
            assert_eq!(parse_wcf_date(bad), None, "{bad}");
        }
    }
}
