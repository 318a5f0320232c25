//! UTC calendar conversions for archive day directories and FHIR `instant`s, without a
//! time-zone library (all Vigil times are UTC ns since the Unix epoch).

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// `(year, month, day)` of the civil date `days` after 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day of `t_ns` as `YYYY-MM-DD`.
pub fn utc_day(t_ns: i64) -> String {
    let (y, m, d) = civil_from_days(t_ns.div_euclid(NS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Start of the UTC day `YYYY-MM-DD` in ns, if it parses.
pub fn day_start_ns(day: &str) -> Option<i64> {
    let mut it = day.split('-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    days_from_civil(y, m, d).checked_mul(NS_PER_DAY)
}

/// RFC 3339 / FHIR `instant` in UTC with nanoseconds, e.g. `2024-03-01T12:00:00.5Z`.
pub fn rfc3339(t_ns: i64) -> String {
    let days = t_ns.div_euclid(NS_PER_DAY);
    let ns_of_day = t_ns.rem_euclid(NS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = ns_of_day / 1_000_000_000;
    let frac = ns_of_day % 1_000_000_000;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc_day(0), "1970-01-01");
        // 2024-02-29T23:59:59.999999999Z, a leap day.
        let t = 1_709_251_199_999_999_999;
        assert_eq!(utc_day(t), "2024-02-29");
        assert_eq!(utc_day(t + 1), "2024-03-01");
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.999999999Z");
        assert_eq!(rfc3339(1_709_251_200_500_000_000), "2024-03-01T00:00:00.5Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(day_start_ns("2024-03-01"), Some(1_709_251_200_000_000_000));
        assert_eq!(day_start_ns("2024-13-01"), None);
        for day in [0_i64, 1, 59, 365, 11_016, 19_782, 40_000] {
            let ns = day * NS_PER_DAY;
            assert_eq!(day_start_ns(&utc_day(ns)), Some(ns), "day {day}");
        }
    }
}
