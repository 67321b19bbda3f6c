//! Running the API: bind, serve, and on SIGINT/SIGTERM stop accepting, let in-flight
//! requests finish, and return.

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

/// Installs the `tracing` log subscriber (level from `RUST_LOG`, default `info`); a no-op if
/// one is installed already.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received: draining in-flight requests");
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `host:port` and serves until SIGINT/SIGTERM, on a runtime of its own (for callers
/// without one, such as the Python bindings). `router` is built inside the runtime.
pub fn serve_blocking(
    host: &str,
    port: u16,
    router: impl FnOnce() -> Router,
) -> Result<(), String> {
    init_logging();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("tokenspeed-http")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = TcpListener::bind((host, port))
            .await
            .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
        let address = listener
            .local_addr()
            .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
        tracing::info!("serving the OpenAI-compatible API on http://{address}");
        serve(listener, router(), shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))
    })
}
