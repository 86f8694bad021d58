//! `checkout-service`: the BookVerse checkout HTTP service.

use std::path::PathBuf;

use anyhow::Context;
use checkout_service::config::Settings;
use checkout_service::startup::{self, Application, Overrides};
use checkout_service::telemetry;
use clap::{Parser, Subcommand};

/// BookVerse Checkout: turns a bookshop customer's cart into a paid order.
///
/// With no configuration at all it serves on 127.0.0.1:8080 from the SQLite
/// file ./checkout.db, with mock payments, a local stock seeded with a demo
/// catalog and events relayed to the log.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// A TOML configuration file, applied over the built-in defaults;
    /// CHECKOUT__<SECTION>__<KEY> environment variables apply over it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations, then serve the API and run the background workers
    /// (reservation sweeper, payment reconciler, confirm retrier, outbox
    /// relay, purger) until SIGTERM or Ctrl-C; in-flight requests finish.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(&settings.log.format, &settings.log.level);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings, Overrides::default()).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            startup::connect_store(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Config => {
            #[allow(clippy::print_stdout)] // the command's output
            {
                println!("{settings:#?}");
            }
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")
        {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
