//! Time as flow logs write it: minute buckets, record `time` stamps (`…T12:01:00.0000000Z`), and
//! the civil calendar behind them.

use crate::packet::Time;

/// 9999-12-31T23:59:59Z: the last instant an RFC 3339 timestamp (four-digit year) can name.
pub(super) const LAST_RFC3339_SECS: u64 = 253_402_300_799;
const SECS_PER_MINUTE: u64 = 60;

pub(super) fn minute_bucket(time: Time) -> u64 {
    time.secs() / SECS_PER_MINUTE
}

pub(super) fn bucket_end_secs(bucket: u64) -> u64 {
    // `Time` holds microseconds in a u64, so buckets are far below u64::MAX / 60.
    (bucket + 1) * SECS_PER_MINUTE
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month in [1, 12] and day in [1, 31] by construction.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Epoch seconds as a record `time`: `YYYY-MM-DDTHH:MM:SS.0000000Z` (UTC, seven fractional
/// digits as Azure writes them). Meant for times up to 9999-12-31T23:59:59Z.
pub fn format_record_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64; // secs < 2^64 so days < 2^48
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.0000000Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses a record `time` as Azure writes it, `YYYY-MM-DDTHH:MM:SS.fffffffZ` (exactly seven
/// fractional digits, UTC): (epoch seconds, 100 ns ticks). `None` if malformed, not a calendar
/// date, or before the epoch.
pub fn parse_record_time(text: &str) -> Option<(u64, u32)> {
    let b = text.as_bytes();
    if b.len() != 28 {
        return None;
    }
    let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        19 => *c == b'.',
        27 => *c == b'Z',
        _ => c.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> { text.get(from..to)?.parse().ok() };
    let year = num(0, 4)?;
    let month = num(5, 7)?;
    let day = num(8, 10)?;
    let hour = num(11, 13)?;
    let minute = num(14, 16)?;
    let second = num(17, 19)?;
    let ticks = num(20, 27)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((u64::try_from(secs).ok()?, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_times() {
        assert_eq!(format_record_time(0), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(
            format_record_time(1_542_110_435),
            "2018-11-13T12:00:35.0000000Z"
        );
        assert_eq!(
            format_record_time(951_782_400),
            "2000-02-29T00:00:00.0000000Z"
        );
        assert_eq!(
            format_record_time(4_107_542_400),
            "2100-03-01T00:00:00.0000000Z"
        );
        assert_eq!(
            format_record_time(LAST_RFC3339_SECS),
            "9999-12-31T23:59:59.0000000Z"
        );
        assert_eq!(
            parse_record_time("2018-11-13T12:00:35.3899262Z"),
            Some((1_542_110_435, 3_899_262))
        );
        assert_eq!(
            parse_record_time("2017-02-16T22:00:32.8950000Z"),
            Some((1_487_282_432, 8_950_000))
        );
        for bad in [
            "2018-11-13T12:00:35Z",
            "2018-11-13T12:00:35.389926Z",
            "2018-11-13 12:00:35.3899262Z",
            "2018-11-13T12:00:35.3899262+00:00",
            "2018-02-29T12:00:35.0000000Z",
            "2018-13-01T12:00:35.0000000Z",
            "2018-11-13T24:00:00.0000000Z",
            "2018-11-13T12:60:00.0000000Z",
            "2018-11-13T12:00:60.0000000Z",
            "1969-12-31T23:59:59.0000000Z",
            "2018-1a-13T12:00:35.0000000Z",
        ] {
            assert_eq!(parse_record_time(bad), None, "{bad}");
        }
        // Round trip over a spread of days, leap years included.
        for days in (0..3_000_000u64).step_by(997) {
            let secs = days * 86_400 + days % 86_400;
            if secs > LAST_RFC3339_SECS {
                break;
            }
            assert_eq!(
                parse_record_time(&format_record_time(secs)),
                Some((secs, 0))
            );
        }
    }
}
