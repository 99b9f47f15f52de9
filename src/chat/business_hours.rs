//! Business hours: is a site open now, and when does it next open?
//!
//! The widget settings hold a weekly schedule as JSON,
//! `{"monday": {"enabled": true, "start": "09:00", "end": "17:00"}, …}`, evaluated in the site's
//! IANA time zone (default `Africa/Lusaka`). Unlike the original, which compared clock strings in
//! the server's zone and returned only `"09:00"`, this evaluation:
//!
//! - works on instants, so it is correct across daylight-saving changes (a start time that falls
//!   into a spring-forward gap opens at the first valid instant after it; an ambiguous
//!   fall-back time opens at the earlier of its two instants);
//! - supports overnight spans such as 22:00–02:00 (the span belongs to the day it starts on);
//! - treats `start == end` as open all day, and accepts `24:00` as an end time;
//! - returns the next opening as an instant (RFC 3339 with the site's offset), searching the
//!   following days, or none when no day is enabled.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use livechat::chat::business_hours::{BusinessHours, DEFAULT_TIMEZONE};
//!
//! let hours = BusinessHours::from_json(&serde_json::json!({
//!     "monday": {"enabled": true, "start": "09:00", "end": "17:00"}
//! }))?;
//! // Monday 2026-11-30 06:00 UTC is 08:00 in Lusaka (UTC+2): closed, opens at 09:00 local.
//! let now = Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap();
//! let a = hours.evaluate_in(DEFAULT_TIMEZONE, now)?;
//! assert!(!a.open);
//! assert_eq!(a.next_open_at.unwrap().to_rfc3339(), "2026-11-30T09:00:00+02:00");
//! # Ok::<(), livechat::chat::business_hours::BusinessHoursError>(())
//! ```

use chrono::{
    DateTime, Datelike, Days, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    TimeZone, Utc,
};
use chrono_tz::Tz;
use serde_json::Value;

/// The time zone the platform assumes when a site has none.
pub const DEFAULT_TIMEZONE: &str = "Africa/Lusaka";

/// Day keys of the schedule JSON, Monday first.
pub const DAY_KEYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Why a schedule or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusinessHoursError {
    /// The schedule is not a JSON object.
    #[error("business hours must be a JSON object of days, got {0}")]
    NotAnObject(String),
    /// A day entry is malformed.
    #[error("business hours for {day}: {reason}")]
    BadDay {
        /// The day key, e.g. `monday`.
        day: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA zone name.
    #[error("unknown time zone {0:?}")]
    UnknownTimeZone(String),
}

/// One day's opening span, in local wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySpan {
    /// Opening time.
    pub start: NaiveTime,
    /// Closing time; at or before `start` means the span ends the next day (`start == end` is a
    /// full 24 hours).
    pub end: NaiveTime,
    /// `end` was written as `24:00`.
    pub end_is_midnight: bool,
}

/// A weekly schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusinessHours {
    /// Monday first; `None` is a closed day.
    pub days: [Option<DaySpan>; 7],
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// Open at the instant evaluated.
    pub open: bool,
    /// When open: the instant the current span closes.
    pub closes_at: Option<DateTime<FixedOffset>>,
    /// When closed: the next opening instant, in the site's offset; `None` when no day is
    /// enabled.
    pub next_open_at: Option<DateTime<FixedOffset>>,
}

/// Parses exactly `HH:MM` or `HH:MM:SS` (two ASCII digits each, hours 00–23, minutes and
/// seconds 00–59; `24:00` / `24:00:00` as an end time when `allow_24`).
fn parse_time(s: &str, allow_24: bool) -> Option<(NaiveTime, bool)> {
    if allow_24 && (s == "24:00" || s == "24:00:00") {
        return Some((NaiveTime::MIN, true));
    }
    let b = s.as_bytes();
    let two = |i: usize| -> Option<u32> {
        let (h, l) = (*b.get(i)?, *b.get(i + 1)?);
        (h.is_ascii_digit() && l.is_ascii_digit()).then(|| u32::from((h - b'0') * 10 + (l - b'0')))
    };
    let (hour, minute, second) = match b.len() {
        5 if b[2] == b':' => (two(0)?, two(3)?, 0),
        8 if b[2] == b':' && b[5] == b':' => (two(0)?, two(3)?, two(6)?),
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some((NaiveTime::from_hms_opt(hour, minute, second)?, false))
}

/// Parses a time zone name (empty or missing means [`DEFAULT_TIMEZONE`]).
pub fn parse_timezone(name: Option<&str>) -> Result<Tz, BusinessHoursError> {
    let name = match name.map(str::trim) {
        None | Some("") => DEFAULT_TIMEZONE,
        Some(n) => n,
    };
    name.parse::<Tz>()
        .map_err(|_| BusinessHoursError::UnknownTimeZone(name.to_string()))
}

/// The first instant at or after the local time `t` on `date` (DST gaps move forward, ambiguous
/// times take the earlier instant).
fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, b) => a.min(b),
        LocalResult::None => {
            // In a gap: step forward minute by minute (gaps are at most a few hours).
            let mut probe = local;
            for _ in 0..(26 * 60) {
                probe += chrono::Duration::minutes(1);
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(t) => return t,
                    LocalResult::Ambiguous(a, b) => return a.min(b),
                    LocalResult::None => {}
                }
            }
            // No zone has a gap of more than a day; fall back to reading the time as UTC.
            tz.from_utc_datetime(&local)
        }
    }
}

impl BusinessHours {
    /// Parses the schedule JSON. Unknown keys and days without `"enabled": true` are closed
    /// days; an enabled day needs valid `start` and `end` times (`HH:MM`, `end` may be `24:00`).
    pub fn from_json(v: &Value) -> Result<BusinessHours, BusinessHoursError> {
        let obj = v
            .as_object()
            .ok_or_else(|| BusinessHoursError::NotAnObject(v.to_string()))?;
        let mut hours = BusinessHours::default();
        for (i, key) in DAY_KEYS.iter().enumerate() {
            let Some(day) = obj.get(*key) else { continue };
            let bad = |reason: &str| BusinessHoursError::BadDay {
                day: key.to_string(),
                reason: reason.to_string(),
            };
            let Some(day) = day.as_object() else {
                return Err(bad("must be an object"));
            };
            match day.get("enabled") {
                Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) | None | Some(Value::Null) => continue,
                Some(_) => return Err(bad("\"enabled\" must be true or false")),
            }
            let start = day
                .get("start")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing \"start\""))?;
            let end = day
                .get("end")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing \"end\""))?;
            let (start, _) = parse_time(start, false)
                .ok_or_else(|| bad(&format!("invalid start time {start:?}")))?;
            let (end, end_is_midnight) =
                parse_time(end, true).ok_or_else(|| bad(&format!("invalid end time {end:?}")))?;
            hours.days[i] = Some(DaySpan {
                start,
                end,
                end_is_midnight,
            });
        }
        Ok(hours)
    }

    /// The opening and closing instants of the span that starts on local `date`, if any.
    fn span_on(&self, tz: Tz, date: NaiveDate) -> Option<(DateTime<Tz>, DateTime<Tz>)> {
        let idx = date.weekday().num_days_from_monday() as usize;
        let span = self.days[idx]?;
        let open = resolve_local(tz, date.and_time(span.start));
        let end_date = if span.end_is_midnight || span.end <= span.start {
            date.checked_add_days(Days::new(1))?
        } else {
            date
        };
        let close = resolve_local(tz, end_date.and_time(span.end));
        (close > open).then_some((open, close))
    }

    /// Evaluates the schedule at `now` in the zone named `tz` (see [`parse_timezone`]).
    pub fn evaluate_in(
        &self,
        tz: &str,
        now: DateTime<Utc>,
    ) -> Result<Availability, BusinessHoursError> {
        Ok(self.evaluate(parse_timezone(Some(tz))?, now))
    }

    /// Evaluates the schedule at `now` in `tz`.
    pub fn evaluate(&self, tz: Tz, now: DateTime<Utc>) -> Availability {
        let today = now.with_timezone(&tz).date_naive();
        let fixed = |t: DateTime<Tz>| t.fixed_offset();
        // A span that started yesterday may still be running (overnight).
        for back in [1u64, 0] {
            let Some(d) = today.checked_sub_days(Days::new(back)) else {
                continue;
            };
            if let Some((open, close)) = self.span_on(tz, d) {
                if open <= now && now < close {
                    return Availability {
                        open: true,
                        closes_at: Some(fixed(close)),
                        next_open_at: None,
                    };
                }
            }
        }
        let next_open_at = (0u64..=8)
            .filter_map(|ahead| today.checked_add_days(Days::new(ahead)))
            .filter_map(|d| self.span_on(tz, d))
            .map(|(open, _)| open)
            .find(|open| *open > now)
            .map(fixed);
        Availability {
            open: false,
            closes_at: None,
            next_open_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays_9_to_5() -> BusinessHours {
        let day = json!({"enabled": true, "start": "09:00", "end": "17:00"});
        BusinessHours::from_json(&json!({
            "monday": day, "tuesday": day, "wednesday": day, "thursday": day, "friday": day,
            "saturday": {"enabled": false, "start": "10:00", "end": "12:00"}
        }))
        .unwrap()
    }

    #[test]
    fn lusaka_weekday_open_and_closed() {
        let h = weekdays_9_to_5();
        // Friday 2026-11-27 10:00 local = 08:00 UTC.
        let a = h
            .evaluate_in("Africa/Lusaka", utc("2026-11-27T08:00:00Z"))
            .unwrap();
        assert!(a.open);
        assert_eq!(
            a.closes_at.unwrap().to_rfc3339(),
            "2026-11-27T17:00:00+02:00"
        );
        // Friday 18:00 local: closed until Monday 09:00, skipping the weekend.
        let a = h
            .evaluate_in("Africa/Lusaka", utc("2026-11-27T16:00:00Z"))
            .unwrap();
        assert!(!a.open);
        assert_eq!(
            a.next_open_at.unwrap().to_rfc3339(),
            "2026-11-30T09:00:00+02:00"
        );
    }

    #[test]
    fn new_york_across_spring_forward_and_fall_back() {
        let h = weekdays_9_to_5();
        // DST starts Sunday 2026-03-08. Friday 2026-03-06 18:00 EST (23:00 UTC): next opening
        // is Monday 09:00 EDT = 13:00 UTC, not 14:00.
        let a = h
            .evaluate_in("America/New_York", utc("2026-03-06T23:00:00Z"))
            .unwrap();
        assert_eq!(
            a.next_open_at.unwrap().to_rfc3339(),
            "2026-03-09T09:00:00-04:00"
        );
        // Monday 2026-03-09 13:30 UTC is 09:30 EDT: open.
        assert!(
            h.evaluate_in("America/New_York", utc("2026-03-09T13:30:00Z"))
                .unwrap()
                .open
        );
        // DST ends Sunday 2026-11-01. Monday 2026-11-02 13:30 UTC is 08:30 EST: closed.
        let a = h
            .evaluate_in("America/New_York", utc("2026-11-02T13:30:00Z"))
            .unwrap();
        assert!(!a.open);
        assert_eq!(
            a.next_open_at.unwrap().to_rfc3339(),
            "2026-11-02T09:00:00-05:00"
        );
    }

    #[test]
    fn auckland_gap_start_opens_at_first_valid_instant() {
        // NZ DST starts Sunday 2026-09-27 at 02:00 → 03:00. A Sunday span starting at 02:30
        // opens at 03:00 NZDT.
        let h = BusinessHours::from_json(&json!({
            "sunday": {"enabled": true, "start": "02:30", "end": "06:00"}
        }))
        .unwrap();
        // Saturday 2026-09-26 12:00 UTC = Sunday 00:00 NZST (+12).
        let a = h
            .evaluate_in("Pacific/Auckland", utc("2026-09-26T12:00:00Z"))
            .unwrap();
        assert_eq!(
            a.next_open_at.unwrap().to_rfc3339(),
            "2026-09-27T03:00:00+13:00"
        );
    }

    #[test]
    fn overnight_span_is_open_after_midnight() {
        let h = BusinessHours::from_json(&json!({
            "friday": {"enabled": true, "start": "22:00", "end": "02:00"}
        }))
        .unwrap();
        // Saturday 2026-11-28 01:00 in Lusaka (23:00 UTC Friday): still open from Friday.
        let a = h
            .evaluate_in("Africa/Lusaka", utc("2026-11-27T23:00:00Z"))
            .unwrap();
        assert!(a.open);
        assert_eq!(
            a.closes_at.unwrap().to_rfc3339(),
            "2026-11-28T02:00:00+02:00"
        );
        // Saturday 03:00: closed, next Friday 22:00.
        let a = h
            .evaluate_in("Africa/Lusaka", utc("2026-11-28T01:00:00Z"))
            .unwrap();
        assert!(!a.open);
        assert_eq!(
            a.next_open_at.unwrap().to_rfc3339(),
            "2026-12-04T22:00:00+02:00"
        );
    }

    #[test]
    fn no_enabled_day_is_closed_with_no_next_opening() {
        let h = BusinessHours::from_json(&json!({
            "monday": {"enabled": false, "start": "09:00", "end": "17:00"}
        }))
        .unwrap();
        let a = h.evaluate_in("UTC", utc("2026-11-30T10:00:00Z")).unwrap();
        assert!(!a.open);
        assert_eq!(a.next_open_at, None);
    }

    #[test]
    fn full_day_and_midnight_end() {
        let h = BusinessHours::from_json(&json!({
            "monday": {"enabled": true, "start": "00:00", "end": "24:00"},
            "tuesday": {"enabled": true, "start": "08:00", "end": "08:00"}
        }))
        .unwrap();
        assert!(
            h.evaluate_in("UTC", utc("2026-11-30T23:59:00Z"))
                .unwrap()
                .open
        );
        // Tuesday 08:00 for 24 h: Wednesday 07:59 still open.
        assert!(
            h.evaluate_in("UTC", utc("2026-12-02T07:59:00Z"))
                .unwrap()
                .open
        );
        assert!(
            !h.evaluate_in("UTC", utc("2026-12-02T08:00:00Z"))
                .unwrap()
                .open
        );
    }

    #[test]
    fn malformed_schedules_are_refused_with_the_day_named() {
        let e = BusinessHours::from_json(&json!({
            "monday": {"enabled": true, "start": "25:00", "end": "17:00"}
        }))
        .unwrap_err();
        assert!(matches!(e, BusinessHoursError::BadDay { ref day, .. } if day == "monday"));
        assert!(BusinessHours::from_json(&json!([1, 2])).is_err());
        for bad in [
            "9:00", "09:5", " 09:00", "09:00:60", "24:01", "12h30", "09:00 ",
        ] {
            assert!(
                BusinessHours::from_json(&json!({
                    "monday": {"enabled": true, "start": bad, "end": "17:00"}
                }))
                .is_err(),
                "{bad:?} must be refused"
            );
        }
        assert_eq!(
            parse_timezone(Some("Mars/Olympus")).unwrap_err(),
            BusinessHoursError::UnknownTimeZone("Mars/Olympus".into())
        );
        assert_eq!(parse_timezone(None).unwrap(), chrono_tz::Africa::Lusaka);
    }
}
