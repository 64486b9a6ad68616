//! The clock the reports (`mentions`, `companies`, `search`) are read and written on, and the
//! `feeds`, `alerts` and `prune` tables printed on: `--time-zone`, else `[reports] time_zone`,
//! else UTC.
//!
//! A date or time given to `--since` or `--until` without an offset is on it, `companies --by`
//! counts its days, weeks and months, and tables print its times. The database keeps UTC, and
//! so do the times JSON and CSV print.

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A `--since` or `--until` as typed, before the report's clock is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// A span back from now, or a time written with its offset.
    At(DateTime<Utc>),
    /// A date or time written without an offset: on the report's clock.
    Wall(NaiveDateTime),
}

impl TimeBound {
    /// `24h`, `7d`; `2026-11-01`, `2026-11-01 09:00:00`; `2026-11-01T09:00:00+01:00`.
    pub fn parse(text: &str) -> Result<TimeBound, String> {
        let text = text.trim();
        if let Ok(span) = humantime::parse_duration(text) {
            return chrono::Duration::from_std(span)
                .ok()
                .and_then(|span| Utc::now().checked_sub_signed(span))
                .map(TimeBound::At)
                .ok_or_else(|| "too long a span back from now".to_owned());
        }
        let wall = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(|day| day.and_time(NaiveTime::MIN))
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S"))
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"));
        if let Ok(wall) = wall {
            // Days either side of it are worked out (see `instant_of`), and the database
            // keeps four-digit years.
            if !(1..=9999).contains(&wall.year()) {
                return Err("write a year from 1 to 9999".to_owned());
            }
            return Ok(TimeBound::Wall(wall));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| TimeBound::At(time.to_utc()))
            .map_err(|_| {
                "write a span back from now (\"24h\", \"7d\"), a date or time on the report's \
                 clock (\"2026-11-01\", \"2026-11-01 09:00:00\"; UTC unless --time-zone or \
                 [reports] time_zone says otherwise) or one with its offset \
                 (\"2026-11-01T09:00:00+01:00\")"
                    .to_owned()
            })
    }
}

/// The time zone of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportClock {
    zone: Tz,
}

impl ReportClock {
    pub fn new(zone: Tz) -> ReportClock {
        ReportClock { zone }
    }

    pub fn zone(self) -> Tz {
        self.zone
    }

    /// The instant `bound` names on this clock.
    pub fn instant(self, bound: TimeBound) -> DateTime<Utc> {
        match bound {
            TimeBound::At(instant) => instant,
            TimeBound::Wall(wall) => self.instant_of(wall),
        }
    }

    /// When `day` begins on this clock: its midnight, or where the clocks skipped it, the
    /// instant they skipped to (`America/Santiago` goes from 23:59:59 to 01:00 on some days).
    pub fn start_of(self, day: NaiveDate) -> DateTime<Utc> {
        self.instant_of(day.and_time(NaiveTime::MIN))
    }

    /// The date `instant` has on this clock.
    pub fn date_of(self, instant: DateTime<Utc>) -> NaiveDate {
        instant.with_timezone(&self.zone).date_naive()
    }

    /// `instant` as the tables print times, on this clock.
    pub fn show(self, instant: DateTime<Utc>) -> String {
        instant
            .with_timezone(&self.zone)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// A time as the database keeps it (UTC, schedule times to the millisecond), as
    /// [`ReportClock::show`] prints it; text that is not such a time is shown as it is.
    pub fn show_stored(self, stored: &str) -> String {
        crate::store::parse_sql_time(stored).map_or_else(|| stored.to_owned(), |at| self.show(at))
    }

    /// A wall time on this clock: the earlier of the two instants that have it when the clocks
    /// go back, and when they go forward over it, the instant they jump at.
    fn instant_of(self, wall: NaiveDateTime) -> DateTime<Utc> {
        if let Some(instant) = self.zone.from_local_datetime(&wall).earliest() {
            return instant.to_utc();
        }
        // The first second whose wall time is later: wall time only grows around a jump
        // forward, and two days either side (offsets are within ±14 h) bracket it.
        let (mut before, mut after) = (
            (wall - chrono::Days::new(2)).and_utc().timestamp(),
            (wall + chrono::Days::new(2)).and_utc().timestamp(),
        );
        let at =
            |seconds: i64| DateTime::from_timestamp(seconds, 0).expect("within chrono's range");
        while after - before > 1 {
            let middle = before + (after - before) / 2;
            if at(middle).with_timezone(&self.zone).naive_local() > wall {
                after = middle;
            } else {
                before = middle;
            }
        }
        at(after)
    }
}

impl Default for ReportClock {
    fn default() -> ReportClock {
        ReportClock::new(Tz::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn clock(zone: &str) -> ReportClock {
        ReportClock::new(zone.parse().unwrap())
    }

    #[test]
    fn bounds_without_an_offset_are_read_on_the_reports_clock() {
        let new_york = clock("America/New_York");
        let bound = |text: &str| TimeBound::parse(text).unwrap();
        assert_eq!(
            new_york.instant(bound("2026-11-01")),
            utc("2026-11-01T04:00:00Z"),
            "still summer time at midnight; the clocks go back at 2:00"
        );
        assert_eq!(
            new_york.instant(bound("2026-11-02 09:00")),
            utc("2026-11-02T14:00:00Z")
        );
        assert_eq!(
            new_york.instant(bound("2026-11-01T09:00:00+01:00")),
            utc("2026-11-01T08:00:00Z"),
            "an offset written wins"
        );
        assert_eq!(
            ReportClock::default().instant(bound("2026-11-01 09:00:00")),
            utc("2026-11-01T09:00:00Z")
        );
        assert!(
            TimeBound::parse("last week")
                .unwrap_err()
                .contains("--time-zone")
        );
        assert_eq!(
            TimeBound::parse("+262142-12-31 23:00"),
            Err("write a year from 1 to 9999".to_owned())
        );
    }

    #[test]
    fn a_wall_time_the_clocks_pass_twice_is_the_first_and_one_they_skip_is_the_jump() {
        let berlin = clock("Europe/Berlin");
        let wall = |text: &str| TimeBound::Wall(text.parse().unwrap());
        assert_eq!(
            berlin.instant(wall("2026-10-25T02:30:00")),
            utc("2026-10-25T00:30:00Z"),
            "summer time's 02:30, an hour before winter time's"
        );
        assert_eq!(
            berlin.instant(wall("2026-03-29T02:30:00")),
            utc("2026-03-29T01:00:00Z"),
            "02:00-03:00 does not exist; the clocks jump at 01:00 UTC"
        );
    }

    #[test]
    fn each_day_starts_at_the_first_instant_with_its_date_in_every_kind_of_zone() {
        // Half and three-quarter hour offsets, half an hour of summer time, and days whose
        // midnight the clocks skip (Chile, in September).
        for zone in [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "America/St_Johns",
            "America/Santiago",
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Kiritimati",
        ] {
            let clock = clock(zone);
            let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            for day in first.iter_days().take(365) {
                let start = clock.start_of(day);
                assert_eq!(clock.date_of(start), day, "{zone} {day}");
                assert_eq!(
                    clock.date_of(start - chrono::Duration::seconds(1)),
                    day.pred_opt().unwrap(),
                    "{zone} {day}"
                );
            }
        }
    }

    #[test]
    fn tables_show_stored_times_on_the_clock() {
        let tokyo = clock("Asia/Tokyo");
        assert_eq!(
            tokyo.show_stored("2026-11-23 20:15:00"),
            "2026-11-24 05:15:00"
        );
        assert_eq!(
            ReportClock::default().show_stored("2026-11-23 20:15:00"),
            "2026-11-23 20:15:00"
        );
        assert_eq!(
            tokyo.show_stored("2026-11-23 20:15:00.250"),
            "2026-11-24 05:15:00"
        );
        assert_eq!(
            ReportClock::default().show_stored("2026-11-23 20:15:00.250"),
            "2026-11-23 20:15:00"
        );
        assert_eq!(tokyo.show_stored("not a time"), "not a time");
    }
}
