//! Times and durations as parameters, SQL functions and messages write them: one grammar for
//! every duration (`staleness`, `gc_margin`, `s3vfs_gc`'s `keep`) and one for points in time
//! (`as_of`, the times `s3vfs_versions()` shows).

use std::time::Duration;

/// The units a duration may carry, in milliseconds; `ms` and `min` are tried before `s` and
/// `m`, which they end with.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("min", 60_000),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 7 * 86_400_000),
];

/// Parses a duration: a number and a unit (`250ms`, `2s`, `1.5s`, `30m`, `24h`, `7d`, `2w`;
/// `min` is `m`), or a bare whole number of milliseconds (`0`, `500`). `Err(())` for a
/// well-formed duration too long to represent; `None` for anything else.
pub fn parse_duration(text: &str) -> Option<Result<Duration, ()>> {
    let text = text.trim();
    let (number, unit_ms) = UNITS
        .iter()
        .find_map(|(unit, millis)| Some((text.strip_suffix(unit)?, *millis)))
        .unwrap_or((text, 1));
    if number.is_empty() {
        return None;
    }
    if number.bytes().all(|byte| byte.is_ascii_digit()) {
        let whole = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms));
        return Some(whole.map(Duration::from_millis).ok_or(()));
    }
    if unit_ms == 1 && !text.ends_with("ms") {
        // A bare number must be whole milliseconds.
        return None;
    }
    let amount = number.parse::<f64>().ok().filter(|amount| *amount >= 0.0)?;
    Some(Duration::try_from_secs_f64(amount * unit_ms as f64 / 1000.0).map_err(|_| ()))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-21T10:00:00.000Z` for Unix milliseconds.
pub fn format_time(time_ms: u64) -> String {
    let seconds = (time_ms / 1000) as i64;
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let in_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        time_ms % 1000
    )
}

/// Parses a point in time: ISO-8601 UTC (`2026-11-21T10:00:00Z`, with optional fractional
/// seconds, `T` or a space, and `Z` optional) or a Unix time as a plain integer, taken as
/// milliseconds when it has more than 11 digits and as seconds otherwise.
pub fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        let number: u64 = text.parse().ok()?;
        return if text.len() > 11 {
            Some(number)
        } else {
            number.checked_mul(1000)
        };
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next().unwrap_or("0").parse().ok()?;
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61
        && fraction.chars().all(|c| c.is_ascii_digit())
        && date.len() == 10;
    if !valid {
        return None;
    }
    let millis: u64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds)
        .ok()?
        .checked_mul(1000)?
        .checked_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_one_grammar() {
        let ms = |millis: u64| Some(Ok(Duration::from_millis(millis)));
        assert_eq!(parse_duration("250ms"), ms(250));
        assert_eq!(parse_duration("2s"), ms(2000));
        assert_eq!(parse_duration("1.5s"), ms(1500));
        assert_eq!(parse_duration("7"), ms(7));
        assert_eq!(parse_duration("90s"), ms(90_000));
        assert_eq!(parse_duration("30m"), ms(1_800_000));
        assert_eq!(parse_duration("30min"), ms(1_800_000));
        assert_eq!(parse_duration("24h"), ms(86_400_000));
        assert_eq!(parse_duration(" 7d "), ms(604_800_000));
        assert_eq!(parse_duration("2w"), ms(1_209_600_000));
        assert_eq!(parse_duration("1.5h"), ms(5_400_000));
        assert_eq!(parse_duration("1e30s"), Some(Err(())));
        assert_eq!(parse_duration("99999999999999999999999"), Some(Err(())));
        assert_eq!(parse_duration("99999999999999999d"), Some(Err(())));
        for bad in ["soon", "-1s", "", "s", "1.5", "1x", "h1"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-11-21T10:00:00Z"), Some(1_795_255_200_000));
        assert_eq!(
            parse_time("2026-11-21 10:00:00.25"),
            Some(1_795_255_200_250)
        );
        assert_eq!(parse_time("2026-11-21"), Some(1_795_219_200_000));
        assert_eq!(parse_time("1795255200"), Some(1_795_255_200_000));
        assert_eq!(parse_time("1795255200123"), Some(1_795_255_200_123));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(format_time(1_795_255_200_250), "2026-11-21T10:00:00.250Z");
        for time in [0u64, 951_782_400_000, 1_795_255_200_999, 4_102_444_800_000] {
            assert_eq!(parse_time(&format_time(time)), Some(time));
        }
    }
}
