//! Schedules: cron expressions with seconds, or crontab's five fields.

use std::str::FromStr;

/// Parses a `schedule`: 6 or 7 fields (seconds first, the `cron` crate's
/// syntax, where day-of-week 1 is Sunday), an `@daily`-style shorthand, or 5
/// fields as in crontab (minute hour day month weekday, weekday 0 or 7 =
/// Sunday), which are read with seconds = 0 and their weekday translated.
/// A schedule that would never fire is refused.
pub(crate) fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let full = match fields.len() {
        1 if fields[0].starts_with('@') => fields[0].to_string(),
        5 => {
            let weekday = crontab_weekdays(fields[4])?;
            format!(
                "0 {} {} {} {} {weekday}",
                fields[0], fields[1], fields[2], fields[3]
            )
        }
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "invalid schedule {expr:?}: expected 5 fields (minute hour day month weekday) \
                 or 6-7 with seconds first, got {n}"
            ))
        }
    };
    let schedule =
        cron::Schedule::from_str(&full).map_err(|e| format!("invalid schedule {expr:?}: {e}"))?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err(format!("schedule {expr:?} never fires"));
    }
    Ok(schedule)
}

/// Translates crontab's day-of-week field (0-7, 0 and 7 = Sunday, names,
/// lists, ranges, steps) into the `cron` crate's numbering (1-7, 1 = Sunday)
/// as an explicit list.
pub(super) fn crontab_weekdays(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let bad = |why: String| format!("invalid day of week {field:?}: {why}");
    let day = |s: &str| -> Result<u32, String> {
        const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32);
        }
        match s.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(bad(format!(
                "{s:?} is not 0-7 (0 and 7 are Sunday) or a name like MON"
            ))),
        }
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => match step.parse::<u32>() {
                Ok(step) if step > 0 => (range, Some(step)),
                _ => return Err(bad(format!("step {step:?} is not a positive number"))),
            },
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day(a)?, day(b)?)
        } else {
            let a = day(range)?;
            (a, if step.is_some() { 6 } else { a })
        };
        if first > last {
            return Err(bad(format!("range {range:?} goes backwards")));
        }
        let mut d = first;
        while d <= last {
            days[(d % 7) as usize] = true;
            d += step.unwrap_or(1);
        }
    }
    Ok(days
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(d, _)| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(","))
}

/// A `timezone`: an IANA name (`America/Sao_Paulo`, `UTC`), from the
/// `chrono-tz` database.
pub(crate) fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!(
            "unknown time zone {name:?}: expected an IANA name like \"America/Sao_Paulo\", \"Europe/Berlin\" or \"UTC\""
        )
    })
}

/// When a timed trigger fires next, strictly after `now`; `None` for a
/// trigger that is not timed (or a schedule that will not fire again).
pub(crate) fn next_firing(
    trigger: &super::Trigger,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::Utc;
    match trigger {
        super::Trigger::Schedule {
            schedule, timezone, ..
        } => match timezone {
            Some(tz) => schedule
                .after(&now.with_timezone(tz))
                .next()
                .map(|t| t.with_timezone(&Utc)),
            None => schedule
                .after(&now.with_timezone(&chrono::Local))
                .next()
                .map(|t| t.with_timezone(&Utc)),
        },
        super::Trigger::Every(every) => {
            let step = i64::try_from(every.as_millis()).ok().filter(|s| *s > 0)?;
            let now_ms = now.timestamp_millis();
            let next = now_ms.div_euclid(step).checked_add(1)?.checked_mul(step)?;
            chrono::DateTime::<Utc>::from_timestamp_millis(next)
        }
        _ => None,
    }
}
