//! Running the API: bind, serve, and on SIGINT/SIGTERM drain: new requests get 503 (the
//! listener keeps answering, so clients see a clear refusal rather than a refused
//! connection), in-flight ones may finish until the drain timeout, then the rest are ended
//! with an error and the server returns.

use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::error::ApiError;

/// Drain timeout when none is given (seconds).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long ended requests get to deliver their error, and connections to close, after the
/// drain (so a stuck connection cannot hold the exit).
const FLUSH: Duration = Duration::from_secs(2);

/// What happens after the shutdown signal.
pub struct Drain {
    /// Longest wait for in-flight requests.
    pub timeout: Duration,
    /// Called if they are still running then (e.g. [`crate::Generator::stop`], which ends
    /// them with an error event instead of a cut connection).
    pub on_timeout: Option<Box<dyn FnOnce() + Send>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            on_timeout: None,
        }
    }
}

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
    tracing::info!("shutdown signal received");
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains with the default
/// timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_draining(listener, router, shutdown, Drain::default()).await
}

/// Requests being served, and whether the server is draining.
#[derive(Default)]
struct Tracker {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Counts one request as in flight until dropped.
struct InFlight(Arc<Tracker>);

impl InFlight {
    fn new(tracker: Arc<Tracker>) -> Self {
        tracker.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(tracker)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// 503 while draining; otherwise counts the request until its response body is sent (a
/// stream's body outlives the handler).
async fn track(State(tracker): State<Arc<Tracker>>, request: Request, next: Next) -> Response {
    if tracker.draining.load(Ordering::SeqCst) {
        let refusal = ApiError::Unavailable("the server is shutting down".into());
        let mut response = refusal.into_response();
        let close = axum::http::HeaderValue::from_static("close");
        response
            .headers_mut()
            .insert(axum::http::header::CONNECTION, close);
        return response;
    }
    let guard = InFlight::new(tracker);
    let response = next.run(request).await;
    if response.body().size_hint().exact().is_some() {
        return response; // complete already: nothing left to wait for
    }
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _counted = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Serves `router` on `listener`; when `shutdown` resolves, answers new requests with 503,
/// waits up to `drain.timeout` for in-flight ones, calls `drain.on_timeout` if some remain,
/// and returns.
pub async fn serve_draining(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Drain,
) -> std::io::Result<()> {
    let tracker = Arc::new(Tracker::default());
    let app = router.layer(middleware::from_fn_with_state(Arc::clone(&tracker), track));
    let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let mut server = tokio::spawn(server.into_future());
    tokio::select! {
        result = &mut server => return result.map_err(std::io::Error::other)?,
        () = shutdown => {}
    }
    tracker.draining.store(true, Ordering::SeqCst);
    let in_flight = tracker.in_flight.load(Ordering::SeqCst);
    let secs = drain.timeout.as_secs_f64();
    tracing::info!(
        in_flight,
        "draining: new requests get 503, waiting up to {secs} s"
    );
    if tokio::time::timeout(drain.timeout, tracker.wait_idle())
        .await
        .is_err()
    {
        let left = tracker.in_flight.load(Ordering::SeqCst);
        tracing::warn!(
            in_flight = left,
            "drain timed out: ending in-flight requests"
        );
        if let Some(on_timeout) = drain.on_timeout {
            on_timeout();
        }
        let _ = tokio::time::timeout(FLUSH, tracker.wait_idle()).await;
    }
    let _ = stop_accepting.send(());
    match tokio::time::timeout(FLUSH, &mut server).await {
        Ok(result) => result.map_err(std::io::Error::other)?,
        Err(_) => {
            server.abort(); // a connection that stays open does not hold the exit
            Ok(())
        }
    }
}

/// Binds `host:port` and serves until SIGINT/SIGTERM, on a runtime of its own (for callers
/// without one, such as the Python bindings), draining with the default timeout. `router`
/// is built inside the runtime.
pub fn serve_blocking(
    host: &str,
    port: u16,
    router: impl FnOnce() -> Router,
) -> Result<(), String> {
    serve_blocking_with(host, port, Drain::default(), router)
}

/// [`serve_blocking`] with the drain options.
pub fn serve_blocking_with(
    host: &str,
    port: u16,
    drain: Drain,
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
    let result = runtime.block_on(async {
        let listener = TcpListener::bind((host, port))
            .await
            .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
        let address = listener
            .local_addr()
            .map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
        tracing::info!("serving the OpenAI-compatible API on http://{address}");
        serve_draining(listener, router(), shutdown_signal(), drain)
            .await
            .map_err(|e| format!("server error: {e}"))
    });
    // Connection tasks still open (a stuck client) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}
