//! `civic-ledger`: a thin entry point; the wiring lives in the library.

/// The event log is read and written in batches of many small allocations,
/// made on one thread and freed on another; glibc's allocator spent a
/// quarter of the read path there (see docs/adr/0002).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    civic_ledger::cli::main().await
}
