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
    /// Mint a bearer token with the configured HS256 secret (auth.hs256_secret),
    /// for local use: `checkout-service token --sub cust-42 --role customer`.
    Token {
        /// The subject: a customer id for `customer`, a name otherwise.
        #[arg(long)]
        sub: String,
        /// `customer`, `staff` or `service`.
        #[arg(long, default_value = "customer")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = checkout_http::DEFAULT_TOKEN_TTL.as_secs())]
        ttl_secs: u64,
    },
}

/// Every request allocates and frees many short-lived buffers (SQL text and
/// its bound values, JSON, headers) on whichever worker runs it; glibc's
/// allocator spent about a third of the HTTP workers' CPU on them
/// (docs/performance.md). SQLite's own allocations stay with the C
/// library's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Token {
            sub,
            role,
            ttl_secs,
        } => {
            let role: checkout_http::Role =
                role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let token = checkout_http::mint_hs256(
                &settings.auth,
                &sub,
                role,
                std::time::Duration::from_secs(ttl_secs),
                time::OffsetDateTime::now_utc(),
            )
            .context("auth.hs256_secret")?;
            #[allow(clippy::print_stdout)] // the command's output
            {
                println!("{token}");
            }
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
