//! Business hours: when a queue is open, in the contact center's own time zone.
//!
//! A [`Schedule`] has opening hours per weekday (any number of spans, `08:00-12:00,13:00-17:30`;
//! `24:00` ends a span at midnight) and holiday dates on which it stays closed. Whether it is
//! open is asked for an instant ([`Schedule::is_open`]): the instant is turned into the local
//! date and time of the schedule's zone, so daylight-saving changes move the opening in UTC
//! and never the opening on the wall clock. Sans-IO: the caller gives the time.

use std::collections::BTreeSet;
use std::time::SystemTime;

pub use jiff::civil::Date;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A span of opening on one day, in minutes since local midnight: `[from, to)`.
pub type Span = (u16, u16);

/// Opening hours in a time zone, with holidays.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    zone_name: String,
    zone: TimeZone,
    /// Monday first.
    week: [Vec<Span>; 7],
    holidays: BTreeSet<Date>,
}

/// The weekday names a schedule's keys use, Monday first.
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `"08:00-12:00, 13:00-17:30"` as spans (empty text: closed all day); the error says what is
/// wrong in words for the config report.
pub fn parse_hours(text: &str) -> Result<Vec<Span>, String> {
    let minute = |t: &str| -> Result<u16, String> {
        let (h, m) = t
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("\"{t}\" is not a time such as 08:30"))?;
        let (h, m): (u16, u16) = (
            h.parse()
                .map_err(|_| format!("\"{t}\": the hour is not a number"))?,
            m.parse()
                .map_err(|_| format!("\"{t}\": the minute is not a number"))?,
        );
        if m > 59 || h > 24 || (h == 24 && m > 0) {
            return Err(format!("\"{t}\" is not a time of day (00:00 to 24:00)"));
        }
        Ok(h * 60 + m)
    };
    let mut spans: Vec<Span> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| format!("\"{part}\" is not a span such as 08:00-17:30"))?;
        let (from, to) = (minute(a)?, minute(b)?);
        if from >= to {
            return Err(format!(
                "\"{part}\" ends before it starts (a span past midnight is two: 22:00-24:00 and 00:00-02:00 of the next day)"
            ));
        }
        spans.push((from, to));
    }
    spans.sort_unstable();
    if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(format!(
            "the spans {} and {} overlap",
            show(w[0]),
            show(w[1])
        ));
    }
    Ok(spans)
}

fn show((from, to): Span) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        from / 60,
        from % 60,
        to / 60,
        to % 60
    )
}

impl Schedule {
    /// Opening `week` (Monday first) in the IANA zone `zone` (e.g. `Europe/Berlin`), closed
    /// on `holidays`. The error names an unknown zone.
    pub fn new(
        zone: &str,
        week: [Vec<Span>; 7],
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<Schedule, String> {
        let tz = TimeZone::get(zone).map_err(|_| {
            format!(
                "\"{zone}\" is not a time zone (use a name such as \"Europe/Berlin\" or \"UTC\")"
            )
        })?;
        Ok(Schedule {
            zone_name: zone.to_owned(),
            zone: tz,
            week,
            holidays: holidays.into_iter().collect(),
        })
    }

    /// The zone's name as configured.
    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// Open at `at`?
    pub fn is_open(&self, at: SystemTime) -> bool {
        let Ok(ts) = Timestamp::try_from(at) else {
            return false;
        };
        let local = ts.to_zoned(self.zone.clone()).datetime();
        if self.holidays.contains(&local.date()) {
            return false;
        }
        let day = match local.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.week[day]
            .iter()
            .any(|&(from, to)| from <= minute && minute < to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(utc: &str) -> SystemTime {
        SystemTime::from(utc.parse::<Timestamp>().unwrap())
    }

    /// Weekdays 08:00-18:00, Saturday 10:00-14:00, Sunday 01:00-04:00 (to cross the change).
    fn office() -> Schedule {
        let day = parse_hours("08:00-18:00").unwrap();
        Schedule::new(
            "Europe/Berlin",
            [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                parse_hours("10:00-14:00").unwrap(),
                parse_hours("01:00-04:00").unwrap(),
            ],
            ["2026-12-25".parse().unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn hours_are_parsed_and_checked() {
        assert_eq!(
            parse_hours("13:00-17:30, 08:00-12:00").unwrap(),
            [(480, 720), (780, 1050)]
        );
        assert_eq!(parse_hours("").unwrap(), []);
        assert_eq!(parse_hours("00:00-24:00").unwrap(), [(0, 1440)]);
        for bad in [
            "8-17",
            "08:00-07:00",
            "08:00-25:00",
            "08:00-12:00,11:00-13:00",
            "8:60-9:00",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
        assert!(Schedule::new("Mars/Olympus", Default::default(), []).is_err());
    }

    #[test]
    fn opening_and_closing_on_the_local_clock() {
        let s = office();
        // Monday 2026-11-30, CET (UTC+1): 08:00 local is 07:00 UTC.
        assert!(!s.is_open(at("2026-11-30T06:59:59Z")));
        assert!(s.is_open(at("2026-11-30T07:00:00Z")));
        assert!(s.is_open(at("2026-11-30T16:59:59Z")));
        assert!(!s.is_open(at("2026-11-30T17:00:00Z")));
        // Saturday 2026-12-05 10:00-14:00 local.
        assert!(!s.is_open(at("2026-12-05T08:59:00Z")));
        assert!(s.is_open(at("2026-12-05T09:00:00Z")));
        // A holiday that falls on a Friday.
        assert!(!s.is_open(at("2026-12-25T10:00:00Z")));
        assert!(s.is_open(at("2026-12-24T10:00:00Z")));
    }

    #[test]
    fn daylight_saving_moves_the_opening_in_utc_not_on_the_wall_clock() {
        let s = office();
        // Friday 2026-03-27 is CET (UTC+1): 06:30 UTC is 07:30 local, closed.
        assert!(!s.is_open(at("2026-03-27T06:30:00Z")));
        // Monday 2026-03-30 is CEST (UTC+2): 06:30 UTC is 08:30 local, open.
        assert!(s.is_open(at("2026-03-30T06:30:00Z")));
        // The night of the change (Sunday 2026-03-29, 02:00 CET → 03:00 CEST), open 01:00-04:00
        // local: 00:30 UTC is 01:30 CET, 01:30 UTC is 03:30 CEST, 02:00 UTC is 04:00 CEST.
        assert!(!s.is_open(at("2026-03-28T23:59:00Z")));
        assert!(s.is_open(at("2026-03-29T00:30:00Z")));
        assert!(s.is_open(at("2026-03-29T01:30:00Z")));
        assert!(!s.is_open(at("2026-03-29T02:00:00Z")));
        // Back in autumn (Sunday 2026-10-25, 03:00 CEST → 02:00 CET): 01:00-04:00 local is
        // 23:00 UTC the day before to 03:00 UTC, an hour longer.
        assert!(s.is_open(at("2026-10-24T23:00:00Z")));
        assert!(s.is_open(at("2026-10-25T02:59:00Z")));
        assert!(!s.is_open(at("2026-10-25T03:00:00Z")));
    }
}
