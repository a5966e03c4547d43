//! Camera days: a date in the source system's form (`MM-DD-YYYY`) or ISO form (`YYYY-MM-DD`),
//! a calendar day in the camera's time zone (`OUTPOST_CAMERA_TIMEZONE`), never in the future.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use outpost_kit::error::{Error, Result};

/// The field a bad date is reported under.
pub const FIELD: &str = "run.parameters.date";

/// Checks a time zone setting: an IANA name such as `UTC` or `Europe/Berlin`.
pub fn parse_time_zone(name: &str) -> std::result::Result<String, String> {
    TimeZone::get(name)
        .map(|_| name.to_string())
        .map_err(|_| format!("{name:?} is not an IANA time zone name (such as UTC or Europe/Berlin)"))
}

/// A calendar day of the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Day {
    date: Date,
}

impl Day {
    /// Reads `MM-DD-YYYY` or `YYYY-MM-DD`; refuses anything else, and a day after `today`.
    pub fn parse(text: &str, today: Day) -> Result<Day> {
        let shown: String = text.chars().take(64).collect();
        let bad = || Error::invalid(FIELD, format!("{shown:?} is not a date (MM-DD-YYYY or YYYY-MM-DD)"));
        let parts: Vec<&str> = text.split('-').collect();
        let numbers = |p: &str| -> Option<i16> {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let (year, month, day) = match parts.as_slice() {
            [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => (*y, *m, *d),
            [m, d, y] if y.len() == 4 && m.len() == 2 && d.len() == 2 => (*y, *m, *d),
            _ => return Err(bad()),
        };
        let (Some(year), Some(month), Some(day)) = (numbers(year), numbers(month), numbers(day)) else {
            return Err(bad());
        };
        let month = i8::try_from(month).map_err(|_| bad())?;
        let day = i8::try_from(day).map_err(|_| bad())?;
        let date = Date::new(year, month, day).map_err(|_| bad())?;
        if date > today.date {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "{shown} is in the future (today is {} in the camera's time zone)",
                    today.iso()
                ),
            ));
        }
        Ok(Day { date })
    }

    /// Today in `zone`.
    pub fn today(zone: &TimeZone) -> Day {
        Day {
            date: jiff::Timestamp::now().to_zoned(zone.clone()).date(),
        }
    }

    /// The latest day there is (to read a stored date, checked when its run was created).
    pub fn latest() -> Day {
        Day { date: Date::MAX }
    }

    /// `YYYY-MM-DD`.
    pub fn iso(&self) -> String {
        self.date.strftime("%Y-%m-%d").to_string()
    }

    /// `MM-DD-YYYY`, as the feed's URLs spell it.
    pub fn feed(&self) -> String {
        self.date.strftime("%m-%d-%Y").to_string()
    }

    /// The day's start and end (exclusive) in `zone`, µs since the epoch.
    pub fn range(&self, zone: &TimeZone) -> Result<(i64, i64)> {
        let start = |date: Date| -> Result<i64> {
            let zoned = date
                .to_zoned(zone.clone())
                .map_err(|e| Error::invalid(FIELD, format!("{date} has no start in the camera's time zone: {e}")))?;
            Ok(zoned.timestamp().as_microsecond())
        };
        let tomorrow = self
            .date
            .tomorrow()
            .map_err(|e| Error::invalid(FIELD, format!("{}: {e}", self.iso())))?;
        Ok((start(self.date)?, start(tomorrow)?))
    }
}

/// Microseconds as RFC 3339, UTC.
pub fn rfc3339(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros).map_or_else(|_| micros.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Day {
        Day::parse("2025-02-10", Day { date: Date::MAX }).unwrap()
    }

    #[test]
    fn both_forms_read_and_bad_dates_name_the_field() {
        let day = Day::parse("02-05-2025", today()).unwrap();
        assert_eq!(day, Day::parse("2025-02-05", today()).unwrap());
        assert_eq!((day.iso().as_str(), day.feed().as_str()), ("2025-02-05", "02-05-2025"));
        for bad in [
            "2025-02-30",
            "13-01-2025",
            "5-2-2025",
            "2025/02/05",
            "",
            "today",
            "+2025-02-05",
            "02-05-20x5",
        ] {
            let err = Day::parse(bad, today()).unwrap_err().to_string();
            assert!(err.starts_with("run.parameters.date: "), "{bad}: {err}");
        }
        let err = Day::parse("02-11-2025", today()).unwrap_err().to_string();
        assert!(err.contains("is in the future"), "{err}");
        assert!(Day::parse("02-10-2025", today()).is_ok(), "today is not the future");
    }

    #[test]
    fn a_day_is_a_calendar_day_of_the_time_zone() {
        let day = Day::parse("2025-02-05", today()).unwrap();
        let (start, end) = day.range(&TimeZone::UTC).unwrap();
        assert_eq!(
            (rfc3339(start).as_str(), end - start),
            ("2025-02-05T00:00:00Z", 86_400_000_000)
        );
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let (start, _) = day.range(&berlin).unwrap();
        assert_eq!(rfc3339(start), "2025-02-04T23:00:00Z");
        // The day summer time starts is 23 hours long.
        let short = Day::parse("2025-03-30", Day { date: Date::MAX }).unwrap();
        let (start, end) = short.range(&berlin).unwrap();
        assert_eq!(end - start, 23 * 3_600_000_000);
        assert!(parse_time_zone("Mars/Jezero").is_err());
        assert!(parse_time_zone("America/Phoenix").is_ok());
    }
}
