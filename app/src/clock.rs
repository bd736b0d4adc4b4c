//! Where the time comes from: the domain never reads a clock, the API does,
//! and tests control it.

use std::sync::atomic::{AtomicI64, Ordering};

use domain::values::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(chrono::Utc::now().timestamp_micros())
    }
}

/// A clock that moves only when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(AtomicI64::new(at.micros()))
    }
    pub fn advance_hours(&self, hours: i64) {
        self.0
            .fetch_add(hours * Timestamp::MICROS_PER_HOUR, Ordering::SeqCst);
    }
    pub fn advance_minutes(&self, minutes: i64) {
        self.0
            .fetch_add(minutes * Timestamp::MICROS_PER_HOUR / 60, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}

/// A timestamp as a UTC date-time, for the schema.
pub fn to_datetime(micros: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default()
}
