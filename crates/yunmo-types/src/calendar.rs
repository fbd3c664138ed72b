//! UTC calendar months for quotas, without a date library (days-from-civil, Howard Hinnant's algorithm).

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

const DAY_MS: i64 = 86_400_000;

/// Unix milliseconds of the first instant of the UTC month holding `ms`.
pub fn month_start_ms(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
    days_from_civil(year, month, 1) * DAY_MS
}

/// Unix milliseconds of the first instant of the next UTC month.
pub fn next_month_start_ms(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
    let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    days_from_civil(year, month, 1) * DAY_MS
}

/// Unix milliseconds of a date (`YYYY-MM-DD`, midnight UTC) or of a Unix-seconds number.
pub fn parse_date_ms(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(seconds * 1000);
    }
    let mut parts = text.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || text.len() != 10 {
        return None;
    }
    Some(days_from_civil(year, month, day) * DAY_MS)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let seconds = ms.rem_euclid(DAY_MS) / 1000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_dates() {
        let ms = parse_date_ms("2026-11-22").unwrap();
        assert_eq!(format_utc(ms), "2026-11-22T00:00:00Z");
        assert_eq!(format_utc(month_start_ms(ms + 5_000)), "2026-11-01T00:00:00Z");
        assert_eq!(format_utc(next_month_start_ms(ms)), "2026-12-01T00:00:00Z");
        assert_eq!(format_utc(next_month_start_ms(parse_date_ms("2026-12-31").unwrap())), "2027-01-01T00:00:00Z");
        assert_eq!(format_utc(parse_date_ms("2024-02-29").unwrap()), "2024-02-29T00:00:00Z");
        assert_eq!(parse_date_ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_date_ms("2026-13-01"), None);
        assert_eq!(parse_date_ms("yesterday"), None);
    }
}
