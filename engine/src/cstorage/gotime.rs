//! Timestamps as Go's `time.Time` writes them in JSON.
//!
//! containers/storage stores `created` times with Go's `encoding/json`, i.e. RFC 3339 with up
//! to nine fractional digits, trailing zeros dropped (`2026-11-22T13:02:13.1145941Z`,
//! `2023-11-14T22:13:20Z`), `Z` for UTC and `±hh:mm` otherwise (the offset of the original
//! value is kept). chrono's own RFC 3339 writer pads the fraction to 3, 6 or 9 digits, so the
//! format is written by hand here to stay byte-compatible with what podman writes and reads.

use std::fmt;

use chrono::{DateTime, FixedOffset, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with the UTC offset it was written with, serialised like Go's `time.Time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoTime(pub DateTime<FixedOffset>);

impl GoTime {
    /// The current time in UTC, with nanoseconds.
    pub fn now() -> Self {
        GoTime(Utc::now().fixed_offset())
    }

    /// Parse an RFC 3339 timestamp (fraction optional, any offset).
    pub fn parse(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s).ok().map(GoTime)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        self.0.timestamp()
    }

    /// The time in UTC.
    pub fn utc(&self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }
}

impl From<DateTime<Utc>> for GoTime {
    fn from(t: DateTime<Utc>) -> Self {
        GoTime(t.fixed_offset())
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.0;
        write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S"))?;
        // Leap seconds are folded into the nanosecond field by chrono; Go has none.
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        let offset = t.offset().local_minus_utc();
        if offset == 0 {
            f.write_str("Z")
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            write!(f, "{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60)
        }
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoTime::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        for s in [
            "2026-11-22T13:02:13.114594109Z",
            "2023-11-14T22:13:20Z",
            "2026-11-22T13:02:13.1Z",
            "2020-01-02T03:04:05.5+02:00",
            "2020-01-02T03:04:05-05:30",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(GoTime::parse(s).unwrap().to_string(), s);
        }
        // Trailing zeros are dropped as Go does.
        assert_eq!(
            GoTime::parse("2023-11-14T22:13:20.120000000Z")
                .unwrap()
                .to_string(),
            "2023-11-14T22:13:20.12Z"
        );
    }

    #[test]
    fn serde_round_trip_and_unix() {
        let t: GoTime = serde_json::from_str("\"2023-11-14T22:13:20Z\"").unwrap();
        assert_eq!(t.unix(), 1_700_000_000);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2023-11-14T22:13:20Z\""
        );
        assert!(serde_json::from_str::<GoTime>("\"yesterday\"").is_err());
    }
}
