//! Calendar helpers: proleptic Gregorian dates as day numbers, and tables of
//! preformatted `YYYY-MM-DD` strings so hot loops never format dates.

use std::fmt;

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub(crate) const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The day number (days since 1970-01-01) of a date written `YYYY-MM-DD`, alone or
/// followed by a time (`2017-08-11 19:03:38`, `2017-08-11T19:03:38Z`); `None` for
/// anything else or an impossible date.
pub fn day_number(text: &str) -> Option<i64> {
    let text = text.trim().as_bytes();
    let (date, rest) = (text.get(..10)?, &text[10..]);
    if !(rest.is_empty() || rest[0] == b' ' || rest[0] == b'T') {
        return None;
    }
    // Digits at fixed places (read byte by byte: this runs once per row of the files).
    let digits = |range: std::ops::Range<usize>| {
        date[range].iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let (year, month, day) = (i64::from(digits(0..4)?), digits(5..7)?, digits(8..10)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&day)
        .then(|| days_from_civil(year, month, day))
}

/// The civil date `(year, month, day)` of a day number (inverse of [`days_from_civil`]).
pub(crate) const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// An inclusive range of days with each day's `YYYY-MM-DD` string precomputed.
#[derive(Clone, Debug)]
pub(crate) struct DayTable {
    labels: Vec<String>,
}

impl DayTable {
    /// All days from `first` to `last` inclusive (day numbers, `first <= last`).
    pub(crate) fn new(first: i64, last: i64) -> Self {
        let labels = (first..=last)
            .map(|d| {
                let (y, m, day) = civil_from_days(d);
                format!("{y:04}-{m:02}-{day:02}")
            })
            .collect();
        Self { labels }
    }

    /// Number of days in the table.
    pub(crate) fn len(&self) -> u32 {
        self.labels.len() as u32
    }

    /// The label of the `offset`-th day of the table.
    pub(crate) fn label(&self, offset: u32) -> &str {
        &self.labels[offset as usize]
    }

    /// A timestamp `offset` days into the table plus `second` of that day,
    /// displayed as `YYYY-MM-DD HH:MM:SS`.
    pub(crate) fn timestamp(&self, offset: u32, second: u32) -> Timestamp<'_> {
        Timestamp {
            date: self.label(offset),
            second,
        }
    }
}

/// A date label and a second of the day; displays as `YYYY-MM-DD HH:MM:SS`.
pub(crate) struct Timestamp<'a> {
    date: &'a str,
    second: u32,
}

impl fmt::Display for Timestamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.second;
        write!(
            f,
            "{} {:02}:{:02}:{:02}",
            self.date,
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_date_texts_when_reading_day_numbers_then_only_real_dates_are_read() {
        assert_eq!(day_number("1970-01-02"), Some(1));
        assert_eq!(day_number("2017-08-11 19:03:38"), day_number("2017-08-11"));
        assert_eq!(
            day_number(" 2016-02-29T00:00:00Z"),
            Some(days_from_civil(2016, 2, 29))
        );
        for bad in [
            "",
            "2017-02-29",
            "2017-13-01",
            "2017-1-01",
            "17-01-01xx",
            "2017-01-01x",
            "2017/01/01",
            "2017-01-0a",
            "+017-01-01",
            "２０17-01-01",
            "yesterday",
        ] {
            assert_eq!(day_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn given_known_dates_when_converting_then_day_numbers_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2017, 1, 1), 17_167);
        assert_eq!(civil_from_days(17_167), (2017, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2016, 2, 29)), (2016, 2, 29));
        let first = days_from_civil(2016, 7, 13);
        let last = days_from_civil(2017, 11, 28);
        for d in first..=last {
            let (y, m, day) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, day), d);
        }
    }

    #[test]
    fn given_a_table_of_2017_then_it_has_365_labels_and_formats_timestamps() {
        let t = DayTable::new(days_from_civil(2017, 1, 1), days_from_civil(2017, 12, 31));
        assert_eq!(t.len(), 365);
        assert_eq!(t.label(0), "2017-01-01");
        assert_eq!(t.label(364), "2017-12-31");
        assert_eq!(
            t.timestamp(58, 3_600 * 19 + 3 * 60 + 38).to_string(),
            "2017-02-28 19:03:38"
        );
    }
}
