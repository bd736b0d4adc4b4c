//! `civic-ledger`: a thin entry point; the wiring lives in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    civic_ledger::cli::main().await
}
