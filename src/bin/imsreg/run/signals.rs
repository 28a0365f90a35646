//! SIGINT/SIGTERM/SIGHUP handling: the first signal cancels the run gracefully (calls on the
//! wire finish, unsent images become `cancelled`, the report is written, exit 130); a second
//! one exits 130 at once. SIGHUP (the terminal or ssh session closed) is a stop request like
//! the others: its default action would kill the run without a report.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::exit;

/// Spawns the handler on the current runtime. `before_hard_exit` runs just before a second
/// signal ends the process (to clear the progress bars). Fails only if signal handlers cannot
/// be installed.
pub fn install(
    cancel: CancellationToken,
    before_hard_exit: Arc<dyn Fn() + Send + Sync>,
) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        tracing::warn!(
            "{name} received: finishing the calls in flight and writing the report (send it again to stop at once)"
        );
        cancel.cancel();
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
        before_hard_exit();
        tracing::error!("second signal: stopping at once, no report written");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    Ok(())
}
