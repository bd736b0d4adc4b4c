//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use store::stats::{StoreStats, APPEND_LATENCY_BUCKETS_US, BATCH_SIZE_BUCKETS};

pub fn render(stats: &StoreStats) -> String {
    let mut out = String::with_capacity(4096);
    let counters = [
        (
            "civic_ledger_appends_total",
            "Appends committed.",
            &stats.appends_total,
        ),
        (
            "civic_ledger_events_appended_total",
            "Events committed.",
            &stats.events_appended_total,
        ),
        (
            "civic_ledger_append_conflicts_total",
            "Appends refused with a conflict.",
            &stats.conflicts_total,
        ),
        (
            "civic_ledger_idempotent_replays_total",
            "Repeats answered with their first outcome.",
            &stats.idempotent_replays_total,
        ),
        (
            "civic_ledger_append_failures_total",
            "Appends that failed for another reason.",
            &stats.append_failures_total,
        ),
        (
            "civic_ledger_append_batches_total",
            "Group-commit batches: a community's appends planned together.",
            &stats.batches_total,
        ),
        (
            "civic_ledger_write_transactions_total",
            "Transactions that committed events (a batch each; batches that wrote nothing commit none).",
            &stats.write_transactions_total,
        ),
        (
            "civic_ledger_append_batch_replans_total",
            "Group-commit batches planned again from the database.",
            &stats.batch_replans_total,
        ),
        (
            "civic_ledger_heads_reads_total",
            "Reads of every community's head by followers of the log.",
            &stats.heads_reads_total,
        ),
        (
            "civic_ledger_tail_reads_total",
            "Reads by followers of the log answered from the events this process committed, in memory.",
            &stats.tail_reads_total,
        ),
        (
            "civic_ledger_log_events_read_total",
            "Events read from the log in PostgreSQL, by readers of the log and by followers the tail did not hold.",
            &stats.log_events_read_total,
        ),
        (
            "civic_ledger_kept_stream_reads_total",
            "Whole-stream reads (aggregates loaded on the cqrs-es path) answered from the streams this process keeps in memory.",
            &stats.kept_stream_reads_total,
        ),
        (
            "civic_ledger_stream_reads_total",
            "Whole-stream reads that read PostgreSQL.",
            &stats.stream_reads_total,
        ),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
    }
    let (buckets, count, sum_us) = stats.append_latency_us.read(&APPEND_LATENCY_BUCKETS_US);
    let buckets: Vec<(String, u64)> = buckets
        .into_iter()
        .map(|(bound_us, n)| (format!("{}", bound_us as f64 / 1e6), n))
        .collect();
    histogram(
        &mut out,
        "civic_ledger_append_latency_seconds",
        "Time from an append's arrival to its outcome.",
        &buckets,
        count,
        &format!("{}", sum_us as f64 / 1e6),
    );
    let (buckets, count, sum) = stats.batch_size.read(&BATCH_SIZE_BUCKETS);
    let buckets: Vec<(String, u64)> = buckets
        .into_iter()
        .map(|(bound, n)| (bound.to_string(), n))
        .collect();
    histogram(
        &mut out,
        "civic_ledger_append_batch_size",
        "Appends per group-commit transaction.",
        &buckets,
        count,
        &sum.to_string(),
    );
    out
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: &[(String, u64)],
    count: u64,
    sum: &str,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

/// Appends each live projection's lag (head position minus checkpoint, the
/// largest over communities).
/// Where each background process is stuck, per community: the position it
/// cannot get past (0 when its failure is not about one event) and how many
/// tries failed in a row.
pub fn render_stalls(out: &mut String, stalls: &[projections::stalls::Stall]) {
    out.push_str("# HELP civic_ledger_process_stuck_position The position a background process cannot get past in a community; 0 when the failure is not about one event.\n");
    out.push_str("# TYPE civic_ledger_process_stuck_position gauge\n");
    for stall in stalls {
        let _ = writeln!(
            out,
            "civic_ledger_process_stuck_position{{process=\"{}\",community=\"{}\"}} {}",
            stall.process,
            stall.community,
            stall.position.unwrap_or(0)
        );
    }
    out.push_str("# HELP civic_ledger_process_stuck_failures Failed tries in a row of a background process in a community.\n");
    out.push_str("# TYPE civic_ledger_process_stuck_failures gauge\n");
    for stall in stalls {
        let _ = writeln!(
            out,
            "civic_ledger_process_stuck_failures{{process=\"{}\",community=\"{}\"}} {}",
            stall.process, stall.community, stall.failures
        );
    }
}

/// The kept answers of repeated reads: how often one was served, how often
/// a read went to the database, and how many are kept now.
pub fn render_read_cache(out: &mut String, cache: &projections::ReadCache) {
    let stats = cache.stats();
    for (name, help, value) in [
        (
            "civic_ledger_read_cache_hits_total",
            "Reads answered from a kept answer.",
            stats.hits_total.load(Ordering::Relaxed),
        ),
        (
            "civic_ledger_read_cache_misses_total",
            "Reads answered from the database.",
            stats.misses_total.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP civic_ledger_read_cache_entries Answers kept now.\n\
         # TYPE civic_ledger_read_cache_entries gauge\ncivic_ledger_read_cache_entries {}",
        cache.entries()
    );
}

pub fn render_lag(out: &mut String, lags: &[(String, i64)]) {
    out.push_str(
        "# HELP civic_ledger_projection_lag_events Events a projection is behind the log.\n",
    );
    out.push_str("# TYPE civic_ledger_projection_lag_events gauge\n");
    for (projection, lag) in lags {
        let _ = writeln!(
            out,
            "civic_ledger_projection_lag_events{{projection=\"{projection}\"}} {lag}"
        );
    }
}
