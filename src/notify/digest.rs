//! When a target's digests go out: `[[notify]] digest`, as pure functions of the clock.
//!
//! A target with a digest gets its alerts gathered and sent together at fixed times of day, on
//! the machine's wall clock (its time zone, as cron's), instead of one POST per story. The
//! schedule is nothing but those times: an alert waits for the first of them after it was
//! queued, so which digest an alert belongs to needs no state beyond its own `created_at`, and a
//! restart, a crash or a one-shot `feedhound poll` from cron keeps to the same digests.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::store::DigestWindow;

/// The times of day a target's digests go out: sorted, without repeats, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestTimes(Vec<NaiveTime>);

/// Why a period cannot be a digest's.
pub const PERIOD_RULE: &str = "a period must be at least a minute and divide a day evenly";

impl DigestTimes {
    /// At each of `times`; None when there are none.
    pub fn at(mut times: Vec<NaiveTime>) -> Option<DigestTimes> {
        times.sort();
        times.dedup();
        (!times.is_empty()).then_some(DigestTimes(times))
    }

    /// Every `period` from midnight (`"1h"`: on the hour; `"1d"`: at midnight). None unless it
    /// is at least a minute, in whole seconds, and divides a day evenly: otherwise the times
    /// would shift from one day to the next.
    pub fn every(period: Duration) -> Option<DigestTimes> {
        const DAY: u64 = 86_400;
        let seconds = period.as_secs();
        if period.subsec_nanos() != 0
            || !(60..=DAY).contains(&seconds)
            || !DAY.is_multiple_of(seconds)
        {
            return None;
        }
        let times = (0..DAY / seconds)
            .map(|k| NaiveTime::from_num_seconds_from_midnight_opt((k * seconds) as u32, 0))
            .collect::<Option<Vec<_>>>()?;
        DigestTimes::at(times)
    }

    /// The times of day, in order.
    #[cfg(test)]
    pub(crate) fn times(&self) -> &[NaiveTime] {
        &self.0
    }

    /// The digest time at or before `now`, and the one after it, on the wall clock of `zone`.
    pub fn window<Z: TimeZone>(&self, now: DateTime<Utc>, zone: &Z) -> DigestWindow {
        let local = now.with_timezone(zone).naive_local();
        let per_day = self.0.len() as i64;
        // Today's times up to now's wall-clock time, and the others after.
        let first_after = self.0.partition_point(|t| *t <= local.time()) as i64;
        let nth = |n: i64| -> Option<DateTime<Utc>> {
            let day = match n.div_euclid(per_day) {
                shift @ 0.. => local.date().checked_add_days(Days::new(shift as u64))?,
                shift => local
                    .date()
                    .checked_sub_days(Days::new(shift.unsigned_abs()))?,
            };
            resolve(day.and_time(self.0[n.rem_euclid(per_day) as usize]), zone)
        };
        // Around a change of clocks the wall clock's order is not time's (a repeated hour's
        // first 02:30 is past while its 02:00 is now): look a day either way, in time's order.
        let (mut last, mut next) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
        for at in (first_after - per_day - 1..first_after + per_day + 1).filter_map(nth) {
            if at <= now {
                last = Some(last.map_or(at, |last| last.max(at)));
            } else {
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        }
        // Two days of times always hold one before now and one after; the fallbacks only keep
        // a zone that answers nothing for those days from stopping delivery.
        DigestWindow {
            last: last.unwrap_or(now),
            next: next.unwrap_or(now + chrono::Duration::days(1)),
        }
    }
}

/// The instant a wall-clock time names in `zone`: the first of two when clocks go back; when
/// they go forward over it, the same time an hour later (the gap is an hour in nearly every
/// zone), so that day's digest is late rather than skipped.
fn resolve<Z: TimeZone>(local: NaiveDateTime, zone: &Z) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn at(text: &str) -> NaiveTime {
        NaiveTime::parse_from_str(text, "%H:%M").unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    fn window(times: &DigestTimes, now: &str, zone: &impl TimeZone) -> (String, String) {
        let window = times.window(utc(now), zone);
        let show = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S").to_string();
        (show(window.last), show(window.next))
    }

    #[test]
    fn a_daily_digest_is_due_at_its_time_and_waits_for_the_next_day_after() {
        let daily = DigestTimes::at(vec![at("08:00")]).unwrap();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
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
            times.times(),
            [at("08:00"), at("17:30")],
            "sorted, once each"
        );
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
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
    fn a_period_counts_from_midnight_and_must_divide_the_day() {
        let hourly = DigestTimes::every(Duration::from_secs(3600)).unwrap();
        assert_eq!(hourly.times().len(), 24);
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            window(&hourly, "2026-11-26 10:59:59", &Utc),
            pair("2026-11-26 10:00:00", "2026-11-26 11:00:00")
        );
        let daily = DigestTimes::every(Duration::from_secs(86_400)).unwrap();
        assert_eq!(daily.times(), [at("00:00")]);
        for refused in [7 * 3600, 86_400 * 7, 59, 0] {
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
        // A zone whose clocks go from 02:00 to 03:00 on 2026-03-29 and back on 2026-10-25, as
        // Central Europe's do, written as the two offsets around each change.
        #[derive(Clone, Copy)]
        struct Europe;
        impl TimeZone for Europe {
            type Offset = FixedOffset;
            fn from_offset(_: &FixedOffset) -> Self {
                Europe
            }
            fn offset_from_local_date(
                &self,
                _: &chrono::NaiveDate,
            ) -> chrono::LocalResult<FixedOffset> {
                unreachable!("not asked for by these tests")
            }
            fn offset_from_local_datetime(
                &self,
                local: &NaiveDateTime,
            ) -> chrono::LocalResult<FixedOffset> {
                let (winter, summer) = (
                    FixedOffset::east_opt(3600).unwrap(),
                    FixedOffset::east_opt(7200).unwrap(),
                );
                let text = local.format("%Y-%m-%d %H:%M:%S").to_string();
                if text.as_str() >= "2026-03-29 02:00:00" && text.as_str() < "2026-03-29 03:00:00" {
                    chrono::LocalResult::None
                } else if text.as_str() >= "2026-10-25 02:00:00"
                    && text.as_str() < "2026-10-25 03:00:00"
                {
                    chrono::LocalResult::Ambiguous(summer, winter)
                } else if text.as_str() >= "2026-03-29 03:00:00"
                    && text.as_str() < "2026-10-25 02:00:00"
                {
                    chrono::LocalResult::Single(summer)
                } else {
                    chrono::LocalResult::Single(winter)
                }
            }
            fn offset_from_utc_date(&self, _: &chrono::NaiveDate) -> FixedOffset {
                unreachable!("not asked for by these tests")
            }
            fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
                let text = utc.format("%Y-%m-%d %H:%M:%S").to_string();
                let summer =
                    text.as_str() >= "2026-03-29 01:00:00" && text.as_str() < "2026-10-25 01:00:00";
                FixedOffset::east_opt(if summer { 7200 } else { 3600 }).unwrap()
            }
        }
        let night = DigestTimes::at(vec![at("02:30")]).unwrap();
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            window(&night, "2026-03-29 00:00:00", &Europe),
            pair("2026-03-28 01:30:00", "2026-03-29 01:30:00"),
            "02:30 does not exist that night: the digest goes at 03:30 local (01:30 UTC)"
        );
        assert_eq!(
            window(&night, "2026-10-25 00:15:00", &Europe),
            pair("2026-10-24 00:30:00", "2026-10-25 00:30:00"),
            "02:30 happens twice: the first"
        );
        assert_eq!(
            window(&night, "2026-10-25 01:00:00", &Europe),
            pair("2026-10-25 00:30:00", "2026-10-26 01:30:00"),
            "past it, at 02:00 again, that digest is the last, and the second 02:30 is not one"
        );
    }
}
