use std::process::ExitCode;

use clap::Parser;
use ouro_executor::{api, config::Cli, server};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Logs go to stderr, coloured only for a person watching.
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let config = match Cli::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ouro-executor: {e}");
            return ExitCode::from(2);
        }
    };
    let executor = match server::start(&config, api::time_limit_deadline()).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = shutdown_signal().await {
        tracing::error!(error = %e, "cannot listen for signals; shutting down");
    }
    executor.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM (how supervisors stop us) or SIGINT (Ctrl-C).
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("SIGINT received") }
    }
    Ok(())
}
