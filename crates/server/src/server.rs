//! Serving: bind, answer until a shutdown signal, then drain — refuse new work with 503, let
//! in-flight requests finish for up to `shutdown_timeout`, and return (dropping whatever is left,
//! which aborts it in the engine).

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app;
use crate::config::{ServedModel, ServerConfig};
use crate::error::{Error, Result};
use crate::state::State;

/// Binds `config.addr` and serves until `shutdown` completes and the drain ends.
pub async fn serve(
    model: ServedModel,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener =
        TcpListener::bind(&config.addr).await.map_err(|source| Error::Bind { addr: config.addr.clone(), source })?;
    serve_on(listener, model, config, shutdown).await
}

/// [`serve`] on a listener the caller bound.
pub async fn serve_on(
    listener: TcpListener,
    model: ServedModel,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let state = Arc::new(State::new(model, config)?);
    let app = app::router(Arc::clone(&state))?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    // stderr, not only the log: scripts and tests read the bound port from it (`--port 0`).
    eprintln!("listening on http://{addr}");
    tracing::info!(%addr, model = %state.model.name, "serving");
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let st = Arc::clone(&state);
    let signal = async move {
        shutdown.await;
        st.draining.store(true, std::sync::atomic::Ordering::Relaxed);
        let in_flight = st.gauges().in_flight;
        tracing::info!(in_flight, timeout_s = st.config.shutdown_timeout.as_secs_f64(), "shutting down: draining");
        let _ = drain_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(signal).into_future();
    let timeout = state.config.shutdown_timeout;
    let deadline = async move {
        match drain_rx.await {
            Ok(()) => tokio::time::sleep(timeout).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        r = server => r.map_err(Error::Serve)?,
        _ = deadline => {
            tracing::warn!(in_flight = state.gauges().in_flight, "shutdown timeout: abandoning in-flight requests");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
