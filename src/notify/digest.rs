//! When a target's digests go out: `[[notify]] digest`, as pure functions of the clock.
//!
//! A target with a digest gets its alerts gathered and sent together at fixed times of the day
//! or the week, on the wall clock of its `time_zone` or else the machine's (as cron's),
//! instead of one POST per story. The schedule is nothing but those times: an alert waits for
//! the first of them after it was queued, so which digest an alert belongs to needs no state
//! beyond its own `created_at`, and a restart, a crash or a one-shot `feedhound poll` from cron
//! keeps to the same digests.

use std::time::Duration;

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};

use chrono_tz::Tz;

use crate::store::DigestWindow;

/// A target's digests: their times, and the clock they are read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSchedule {
    pub times: DigestTimes,
    /// `[[notify]] time_zone`; None: the time zone of the process that reads it.
    pub zone: Option<Tz>,
}

impl DigestSchedule {
    /// The digest time at or before `now`, and the one after it.
    pub fn window(&self, now: DateTime<Utc>) -> DigestWindow {
        match &self.zone {
            Some(zone) => self.times.window(now, zone),
            None => self.times.window(now, &chrono::Local),
        }
    }
}

/// One digest time as written: a time of day, every day or on one day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestTime {
    pub weekday: Option<Weekday>,
    pub time: NaiveTime,
}

/// The times a target's digests go out, repeating every day, or every week once any of them
/// names a day: sorted, without repeats, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestTimes {
    cycle_days: u64,
    slots: Vec<Slot>,
}

/// A digest time within its cycle: days from the cycle's first (Monday for a week), then the
/// time of day, so the derived order is time's order on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    day: u64,
    time: NaiveTime,
}

/// Why a period cannot be a digest's.
pub const PERIOD_RULE: &str = "a period must be at least a minute and divide a day evenly, or be a week (Mondays at midnight)";

const DAY_SECONDS: u64 = 86_400;
const WEEK_DAYS: u64 = 7;

impl DigestTimes {
    /// At each of `times`, every week if any names a day (the others then on every day of it);
    /// None when there are none.
    pub fn at(times: Vec<DigestTime>) -> Option<DigestTimes> {
        let weekly = times.iter().any(|t| t.weekday.is_some());
        let slots = times
            .into_iter()
            .flat_map(|t| {
                let days = match (t.weekday, weekly) {
                    (Some(day), _) => {
                        let day = u64::from(day.num_days_from_monday());
                        day..day + 1
                    }
                    (None, true) => 0..WEEK_DAYS,
                    (None, false) => 0..1,
                };
                days.map(move |day| Slot { day, time: t.time })
            })
            .collect();
        DigestTimes::of(if weekly { WEEK_DAYS } else { 1 }, slots)
    }

    /// Every `period` from midnight (`"1h"`: on the hour; `"1d"`: at midnight), or a week
    /// (`"1w"`: Mondays at midnight). None unless it is at least a minute, in whole seconds, and
    /// divides a day evenly or is a week: otherwise the times would shift from one day to the
    /// next.
    pub fn every(period: Duration) -> Option<DigestTimes> {
        let seconds = period.as_secs();
        if period.subsec_nanos() != 0 {
            return None;
        }
        if seconds == WEEK_DAYS * DAY_SECONDS {
            let midnight = Slot {
                day: 0,
                time: NaiveTime::MIN,
            };
            return DigestTimes::of(WEEK_DAYS, vec![midnight]);
        }
        if !(60..=DAY_SECONDS).contains(&seconds) || !DAY_SECONDS.is_multiple_of(seconds) {
            return None;
        }
        let slots = (0..DAY_SECONDS / seconds)
            .map(|k| {
                let time = NaiveTime::from_num_seconds_from_midnight_opt((k * seconds) as u32, 0)?;
                Some(Slot { day: 0, time })
            })
            .collect::<Option<Vec<_>>>()?;
        DigestTimes::of(1, slots)
    }

    fn of(cycle_days: u64, mut slots: Vec<Slot>) -> Option<DigestTimes> {
        slots.sort();
        slots.dedup();
        (!slots.is_empty()).then_some(DigestTimes { cycle_days, slots })
    }

    /// The times as a reader checks them: `"08:00:00"`, or `"Mon 08:00:00"` in a weekly cycle.
    #[cfg(test)]
    pub(crate) fn describe(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|slot| {
                let time = slot.time.format("%H:%M:%S");
                match self.cycle_days {
                    1 => time.to_string(),
                    _ => format!("{} {time}", Weekday::try_from(slot.day as u8).unwrap()),
                }
            })
            .collect()
    }

    /// The digest time at or before `now`, and the one after it, on the wall clock of `zone`.
    pub fn window<Z: TimeZone>(&self, now: DateTime<Utc>, zone: &Z) -> DigestWindow {
        let local = now.with_timezone(zone).naive_local();
        let into_cycle = match self.cycle_days {
            1 => 0,
            _ => u64::from(local.weekday().num_days_from_monday()),
        };
        // The fallbacks only keep a zone that answers nothing for these days, or a date at an
        // end of chrono's calendar, from stopping delivery.
        let fallback = DigestWindow {
            last: now,
            next: now
                .checked_add_signed(chrono::Duration::days(1))
                .unwrap_or(now),
        };
        let Some(cycle_start) = local.date().checked_sub_days(Days::new(into_cycle)) else {
            return fallback;
        };
        let per_cycle = self.slots.len() as i64;
        // This cycle's times up to now's wall-clock time, and the others after.
        let position = Slot {
            day: into_cycle,
            time: local.time(),
        };
        let first_after = self.slots.partition_point(|slot| *slot <= position) as i64;
        let nth = |n: i64| -> Option<DateTime<Utc>> {
            let slot = self.slots[n.rem_euclid(per_cycle) as usize];
            let days = n.div_euclid(per_cycle) * self.cycle_days as i64 + slot.day as i64;
            resolve(shift(cycle_start, days)?.and_time(slot.time), zone)
        };
        // Around a change of clocks the wall clock's order is not time's (a repeated hour's
        // first 02:30 is past while its 02:00 is now): look a cycle either way, in time's order.
        let (mut last, mut next) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
        for at in (first_after - per_cycle - 1..first_after + per_cycle + 1).filter_map(nth) {
            if at <= now {
                last = Some(last.map_or(at, |last| last.max(at)));
            } else {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        }
        // Two cycles of times always hold one before now and one after.
        DigestWindow {
            last: last.unwrap_or(fallback.last),
            next: next.unwrap_or(fallback.next),
        }
    }
}

/// `days` after `date`, or before it when negative.
fn shift(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    match days {
        0.. => date.checked_add_days(Days::new(days as u64)),
        _ => date.checked_sub_days(Days::new(days.unsigned_abs())),
    }
}

/// The instant a wall-clock time names in `zone`: the first of two when clocks go back; when
/// they go forward over it, the same time an hour later (the gap is an hour in nearly every
/// zone), so that day's digest is late rather than skipped.
fn resolve<Z: TimeZone>(local: NaiveDateTime, zone: &Z) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            let hour_later = local.checked_add_signed(chrono::Duration::hours(1))?;
            zone.from_local_datetime(&hour_later).earliest()
        })
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn at(text: &str) -> DigestTime {
        DigestTime {
            weekday: None,
            time: NaiveTime::parse_from_str(text, "%H:%M").unwrap(),
        }
    }

    fn on(weekday: Weekday, text: &str) -> DigestTime {
        DigestTime {
            weekday: Some(weekday),
            ..at(text)
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    fn window(times: &DigestTimes, now: &str, zone: &impl TimeZone) -> (String, String) {
        shown(times.window(utc(now), zone))
    }

    fn pair(last: &str, next: &str) -> (String, String) {
        (last.to_string(), next.to_string())
    }

    fn shown(window: DigestWindow) -> (String, String) {
        let show = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S").to_string();
        (show(window.last), show(window.next))
    }

    #[test]
    fn a_daily_digest_is_due_at_its_time_and_waits_for_the_next_day_after() {
        let daily = DigestTimes::at(vec![at("08:00")]).unwrap();
        assert_eq!(
            window(&daily, "2026-11-26 07:59:59", &Utc),
            pair("2026-11-25 08:00:00", "2026-11-26 08:00:00")
        );
        assert_eq!(
            window(&daily, "2026-11-26 08:00:00", &Utc),
            pair("2026-11-26 08:00:00", "2026-11-27 08:00:00"),
            "the time itself belongs to the digest going out"
        );
        let paris_winter = FixedOffset::east_opt(3600).unwrap();
        assert_eq!(
            window(&daily, "2026-11-26 07:30:00", &paris_winter),
            pair("2026-11-26 07:00:00", "2026-11-27 07:00:00"),
            "08:00 on the local clock"
        );
        let new_york = FixedOffset::west_opt(5 * 3600).unwrap();
        assert_eq!(
            window(&daily, "2026-11-26 02:00:00", &new_york),
            pair("2026-11-25 13:00:00", "2026-11-26 13:00:00"),
            "the local date, not UTC's, picks the day"
        );
    }

    #[test]
    fn several_times_a_day_go_in_order_across_midnight() {
        let times = DigestTimes::at(vec![at("17:30"), at("08:00"), at("17:30")]).unwrap();
        assert_eq!(
            times.describe(),
            ["08:00:00", "17:30:00"],
            "sorted, once each"
        );
        assert_eq!(
            window(&times, "2026-11-26 12:00:00", &Utc),
            pair("2026-11-26 08:00:00", "2026-11-26 17:30:00")
        );
        assert_eq!(
            window(&times, "2026-11-26 23:00:00", &Utc),
            pair("2026-11-26 17:30:00", "2026-11-27 08:00:00")
        );
        assert_eq!(
            window(&times, "2026-01-01 01:00:00", &Utc),
            pair("2025-12-31 17:30:00", "2026-01-01 08:00:00")
        );
    }

    #[test]
    fn a_time_on_a_day_of_the_week_makes_the_digests_weekly() {
        // 2026-11-26 is a Thursday.
        let monday = DigestTimes::at(vec![on(Weekday::Mon, "08:00")]).unwrap();
        assert_eq!(
            window(&monday, "2026-11-26 12:00:00", &Utc),
            pair("2026-11-23 08:00:00", "2026-11-30 08:00:00")
        );
        assert_eq!(
            window(&monday, "2026-11-30 08:00:00", &Utc),
            pair("2026-11-30 08:00:00", "2026-12-07 08:00:00"),
            "the time itself belongs to the digest going out"
        );
        assert_eq!(
            window(&monday, "2026-11-23 07:59:59", &Utc),
            pair("2026-11-16 08:00:00", "2026-11-23 08:00:00")
        );
        let new_york = DigestSchedule {
            times: monday.clone(),
            zone: Some(chrono_tz::America::New_York),
        };
        assert_eq!(
            shown(new_york.window(utc("2026-11-30 02:00:00"))),
            pair("2026-11-23 13:00:00", "2026-11-30 13:00:00"),
            "Monday on the target's clock: still Sunday evening in New York"
        );

        let mixed = DigestTimes::at(vec![at("08:00"), on(Weekday::Fri, "17:30")]).unwrap();
        assert_eq!(
            mixed.describe(),
            [
                "Mon 08:00:00",
                "Tue 08:00:00",
                "Wed 08:00:00",
                "Thu 08:00:00",
                "Fri 08:00:00",
                "Fri 17:30:00",
                "Sat 08:00:00",
                "Sun 08:00:00"
            ],
            "a time without a day is on every day of the week"
        );
        assert_eq!(
            window(&mixed, "2026-11-27 12:00:00", &Utc),
            pair("2026-11-27 08:00:00", "2026-11-27 17:30:00")
        );
        assert_eq!(
            window(&mixed, "2026-11-29 20:00:00", &Utc),
            pair("2026-11-29 08:00:00", "2026-11-30 08:00:00"),
            "Sunday to Monday crosses the week"
        );
    }

    #[test]
    fn a_period_counts_from_midnight_and_must_divide_the_day_or_be_a_week() {
        let hourly = DigestTimes::every(Duration::from_secs(3600)).unwrap();
        assert_eq!(hourly.describe().len(), 24);
        assert_eq!(
            window(&hourly, "2026-11-26 10:59:59", &Utc),
            pair("2026-11-26 10:00:00", "2026-11-26 11:00:00")
        );
        let daily = DigestTimes::every(Duration::from_secs(86_400)).unwrap();
        assert_eq!(daily.describe(), ["00:00:00"]);
        let weekly = DigestTimes::every(Duration::from_secs(7 * 86_400)).unwrap();
        assert_eq!(
            weekly.describe(),
            ["Mon 00:00:00"],
            "a week: Mondays at midnight"
        );
        for refused in [7 * 3600, 2 * 86_400, 14 * 86_400, 59, 0] {
            assert_eq!(
                DigestTimes::every(Duration::from_secs(refused)),
                None,
                "{refused} s"
            );
        }
        assert_eq!(DigestTimes::every(Duration::from_millis(90_500)), None);
        assert_eq!(DigestTimes::at(Vec::new()), None);
    }

    #[test]
    fn a_time_the_clocks_skip_or_repeat_still_has_one_digest() {
        // Central Europe's clocks go from 02:00 to 03:00 on 2026-03-29 and back on 2026-10-25.
        let paris = chrono_tz::Europe::Paris;
        let night = DigestTimes::at(vec![at("02:30")]).unwrap();
        assert_eq!(
            window(&night, "2026-03-29 00:00:00", &paris),
            pair("2026-03-28 01:30:00", "2026-03-29 01:30:00"),
            "02:30 does not exist that night: the digest goes at 03:30 local (01:30 UTC)"
        );
        assert_eq!(
            window(&night, "2026-10-25 00:15:00", &paris),
            pair("2026-10-24 00:30:00", "2026-10-25 00:30:00"),
            "02:30 happens twice: the first"
        );
        assert_eq!(
            window(&night, "2026-10-25 01:00:00", &paris),
            pair("2026-10-25 00:30:00", "2026-10-26 01:30:00"),
            "past it, at 02:00 again, that digest is the last, and the second 02:30 is not one"
        );
        let sundays = DigestTimes::at(vec![on(Weekday::Sun, "02:30")]).unwrap();
        assert_eq!(
            window(&sundays, "2026-03-29 00:00:00", &paris),
            pair("2026-03-22 01:30:00", "2026-03-29 01:30:00"),
            "a weekly time the clocks skip goes an hour later that week"
        );
        assert_eq!(
            window(&sundays, "2026-10-25 00:15:00", &paris),
            pair("2026-10-18 00:30:00", "2026-10-25 00:30:00"),
            "a weekly time the clocks repeat goes the first time"
        );
        assert_eq!(
            window(&sundays, "2026-10-25 01:00:00", &paris),
            pair("2026-10-25 00:30:00", "2026-11-01 01:30:00"),
            "past it, at 02:00 again, the second 02:30 is not one: next week's is next"
        );
    }
}
