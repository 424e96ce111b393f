//! Calendar dates in UTC, for the few formats the gateway writes and reads (RFC 5322
//! dates, report days, log times). Hand-written because these few functions would be a
//! date crate's only use; the algorithms are Howard Hinnant's (days from and to civil
//! dates, counting in 400-year eras from 0000-03-01).

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// (year, month, day) of a unix time, UTC.
pub fn civil(unix: i64) -> (i64, i64, i64) {
    let z = unix.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a unix time.
pub fn ymd(unix: i64) -> String {
    let (y, m, d) = civil(unix);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Start (unix seconds, 00:00 UTC) of a `YYYY-MM-DD` day; None for anything else,
/// 2026-02-30 included.
pub fn parse_ymd(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let start = days_from_civil(y, m, d) * DAY;
    (civil(start) == (y, m, d)).then_some(start)
}

/// `2026-11-22T00:00:00Z` for a unix time (UTC).
pub fn iso(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil(unix);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// An RFC 5322 date in UTC, e.g. `Mon, 23 Nov 2026 10:41:02 +0000`. Hand-written
/// because only this one format is needed and a date crate would be its only user.
pub fn rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (year, month, day) = civil(unix);
    let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[weekday as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_both_ways() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(parse_ymd("1970-01-01"), Some(0));
        assert_eq!(ymd(1_795_430_462), "2026-11-23");
        assert_eq!(ymd(1_795_392_000 + 86_399), "2026-11-23");
        assert_eq!(parse_ymd("2026-11-23"), Some(1_795_392_000));
        assert_eq!(parse_ymd("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_ymd("2026-02-30"), None);
        assert_eq!(parse_ymd("2026-13-01"), None);
        assert_eq!(parse_ymd("yesterday"), None);
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn formats() {
        assert_eq!(super::rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            super::rfc5322_date(1_795_430_462),
            "Mon, 23 Nov 2026 10:41:02 +0000"
        );
        assert_eq!(
            super::rfc5322_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso(1_795_391_999), "2026-11-22T23:59:59Z");
        assert_eq!(super::iso(951_782_400), "2000-02-29T00:00:00Z");
    }
}
