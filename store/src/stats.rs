//! Counters the store keeps about itself; the API renders them as Prometheus text.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (in microseconds) of the append latency histogram's buckets.
pub const APPEND_LATENCY_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    5_000_000,
];
/// Upper bounds of the batch size histogram's buckets (appends per transaction).
pub const BATCH_SIZE_BUCKETS: [u64; 8] = [1, 2, 4, 8, 16, 64, 256, 512];

pub struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[u64; N], value: u64) {
        if let Some(i) = bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound, then the total count and sum.
    pub fn read(&self, bounds: &[u64; N]) -> (Vec<(u64, u64)>, u64, u64) {
        let mut running = 0;
        let buckets = bounds
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                running += n.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        (
            buckets,
            self.count.load(Ordering::Relaxed),
            self.sum.load(Ordering::Relaxed),
        )
    }
}

#[derive(Default)]
pub struct StoreStats {
    pub appends_total: AtomicU64,
    pub events_appended_total: AtomicU64,
    pub conflicts_total: AtomicU64,
    pub idempotent_replays_total: AtomicU64,
    pub append_failures_total: AtomicU64,
    pub batches_total: AtomicU64,
    /// Batches planned again under the head lock: their base moved, or
    /// they expected versions newer than the writer believed (another
    /// process wrote those streams).
    pub batch_replans_total: AtomicU64,
    /// Reads of every community's head for followers of the whole log
    /// (shared by followers woken together).
    pub heads_reads_total: AtomicU64,
    /// Reads by followers of the log answered from the events this process
    /// committed, kept in memory, without a read of the log.
    pub tail_reads_total: AtomicU64,
    /// Events read from the log in PostgreSQL, by readers of the log and
    /// by followers whose reads the tail did not hold.
    pub log_events_read_total: AtomicU64,
    /// Whole-stream reads answered from the streams this process keeps
    /// in memory, and those that read PostgreSQL.
    pub kept_stream_reads_total: AtomicU64,
    pub stream_reads_total: AtomicU64,
    /// Transactions that committed events: one community's batch each.
    pub write_transactions_total: AtomicU64,
    pub append_latency_us: Histogram<12>,
    pub batch_size: Histogram<8>,
}

impl StoreStats {
    pub(crate) fn observe_batch(&self, appends: usize) {
        self.batches_total.fetch_add(1, Ordering::Relaxed);
        self.batch_size.observe(&BATCH_SIZE_BUCKETS, appends as u64);
    }

    pub(crate) fn observe_append_latency(&self, micros: u64) {
        self.append_latency_us
            .observe(&APPEND_LATENCY_BUCKETS_US, micros);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
