//! `covet-server`: the covet reference server. See `covet-server --help`.

use std::{
    io::{IsTerminal, Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use covet_layers::telemetry::{self, Telemetry, TelemetryBuilder};
use covet_server::{
    Server,
    config::{Command, Config, LogFormat},
};

fn main() -> ExitCode {
    let config = Config::parse();
    if let Err(message) = config.validate() {
        eprintln!("covet-server: {message}");
        return ExitCode::from(2);
    }
    if let Some(Command::Healthcheck { timeout }) = config.command {
        return healthcheck(config.admin_listen, timeout);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("covet-server: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let telemetry = match telemetry_builder(config.log_format)
            .log_buffer_lines(config.log_buffer_lines)
            .init()
        {
            Ok(guard) => guard,
            Err(err) => {
                eprintln!("covet-server: telemetry: {err}");
                return ExitCode::from(2);
            }
        };
        let server = match Server::build(&config).await {
            Ok(server) => server,
            Err(err) => {
                eprintln!("covet-server: {err}");
                return ExitCode::from(2);
            }
        };
        if let Err(err) = telemetry.register_metrics(server.registry()) {
            eprintln!("covet-server: telemetry metrics: {err}");
            return ExitCode::from(1);
        }
        if let Err(err) = server.shutdown().listen_for_signals() {
            eprintln!("covet-server: {err}");
            return ExitCode::from(1);
        }
        let code = match server.run().await {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "covet-server failed");
                ExitCode::from(1)
            }
        };
        // Last: spans, then the queued log lines ("shutdown complete" included).
        if let Err(err) = telemetry.shutdown().await {
            eprintln!("covet-server: flushing spans: {err}");
        }
        code
    })
}

/// Logs to stderr as JSON (or readable on a terminal), through the log queue so a slow reader
/// never holds up a request; spans go to an OTLP collector only when
/// one is configured through the standard `OTEL_*` variables, so the embedded default needs none.
fn telemetry_builder(format: LogFormat) -> TelemetryBuilder {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let configured = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let export = configured("OTEL_EXPORTER_OTLP_ENDPOINT")
        || configured("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "otlp");
    Telemetry::builder()
        .format(if json {
            telemetry::LogFormat::Json
        } else {
            telemetry::LogFormat::Pretty
        })
        .output(std::io::stderr())
        // Colours only for a person at a terminal, never into a pipe or a file.
        .colours(std::io::stderr().is_terminal())
        .service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "covet-server".to_owned()),
        )
        .export(export)
}

/// Probes `/health/live` on the admin port: exit 0 for a 2xx/3xx answer, 1 otherwise.
fn healthcheck(admin: SocketAddr, timeout: Duration) -> ExitCode {
    let mut target = admin;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = || -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(
            stream,
            "GET /health/live HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("not an HTTP response"))
    };
    match probe() {
        Ok(status) if (200..400).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("covet-server healthcheck: /health/live answered {status}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("covet-server healthcheck: {target}: {err}");
            ExitCode::from(1)
        }
    }
}
