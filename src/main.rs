//! The `feedhound` binary: parses the command line, sets up logging and signals, and hands over
//! to the library. Only this file touches process-wide state.

use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;

use feedhound::cli::{Cli, LogFormat, execute};
use feedhound::scheduler::Control;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Worker threads of the async runtime: one fewer than the cores, at least one, unless
/// `TOKIO_WORKER_THREADS` says otherwise. The runtime moves bytes (HTTP, TLS, gzip and brotli,
/// a hash of each body); documents are parsed on the parse pool and every write runs on the
/// store's writer thread, which needs a core to itself during a poll. On two cores a second
/// worker only added wake-ups between the two: a cold poll of the harness corpus took 1.040 s
/// with one and 1.085 s with two, and 1.025 s against 1.055 s in a second series (6 alternating
/// runs each; 12% fewer context switches). Machines with more cores were not measured.
fn runtime_workers() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    std::thread::available_parallelism()
        .ok()
        .map(|cores| cores.get().saturating_sub(1).max(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = runtime_workers() {
        runtime.worker_threads(workers);
    }
    let runtime = runtime.enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("feedhound: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let control = Control::default();
        tokio::spawn(stop_on_signals(control.shutdown.clone()));
        tokio::spawn(reload_on_sighup(Arc::clone(&control.reload)));
        match execute(cli, control).await {
            Ok(code) => code,
            // `feedhound mentions | head` closing the pipe early is not an error.
            Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("feedhound: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("feedhound=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM; a second one ends the process at once,
/// for a user who does not want to wait for the fetches in flight.
async fn stop_on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop feedhound with SIGKILL");
        return;
    };
    for round in 0..2 {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            tracing::info!("signal received: stopping (send it again to stop at once)");
            shutdown.cancel();
        }
    }
    std::process::exit(130);
}

/// Asks the daemon to reload its config on every SIGHUP.
async fn reload_on_sighup(reload: Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; config edits are still picked up from the file");
        return;
    };
    while hangup.recv().await.is_some() {
        reload.notify_one();
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
