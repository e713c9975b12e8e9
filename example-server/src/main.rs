//! `covet-server`: the covet reference server.

use std::{net::SocketAddr, process::ExitCode};

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The covet reference server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address the API listens on.
    #[arg(long, env = "COVET_LISTEN", default_value = covet_server::DEFAULT_LISTEN)]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "covet-server: cannot listen on {} (--listen): {err}",
                args.listen
            );
            return ExitCode::from(1);
        }
    };
    tracing::info!(listen = %args.listen, "covet-server listening");
    let served = axum::serve(listener, covet_server::app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("covet-server: {err}");
            ExitCode::from(1)
        }
    }
}
