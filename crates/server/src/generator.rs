//! [`Generator`]: what the HTTP layer needs from an engine. Routes are written against this
//! small trait so they can be tested with a scripted fake; [`crate::engine_backend`] implements
//! it for the real [`tokenspeed_engine::Engine`].

use tokenspeed_engine::RequestEvent;
use tokenspeed_scheduler::{RequestId, RequestSpec, SchedulerStats};
use tokio::sync::mpsc::UnboundedSender;

/// One generation: a prompt, its limits and sampling, and whether to return logprobs.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Prompt, sampling, stop ids and limits for the scheduler.
    pub spec: RequestSpec,
    /// `None`: no logprobs; `Some(k)`: the sampled token's logprob and the top `k`.
    pub logprobs: Option<u32>,
}

/// Where a generation's events go: `(choice index, event)` into the HTTP request's channel,
/// so the `n` choices of one request share one receiver.
#[derive(Debug, Clone)]
pub struct EventSink {
    /// Choice index stamped on every event.
    pub index: usize,
    /// The HTTP request's channel.
    pub tx: UnboundedSender<(usize, RequestEvent)>,
}

impl EventSink {
    /// Sends one event; false once the HTTP side is gone.
    pub fn send(&self, event: RequestEvent) -> bool {
        self.tx.send((self.index, event)).is_ok()
    }
}

impl tokenspeed_engine::RequestSink for EventSink {
    fn send(&self, event: RequestEvent) -> bool {
        EventSink::send(self, event)
    }
}

/// An engine seen from the HTTP layer.
pub trait Generator: Send + Sync + 'static {
    /// Starts a generation; its events (ending with `Finished` or `Failed`) go to `sink`.
    /// May block briefly (it can wait for the executor's lock): call it off the async runtime.
    fn submit(&self, request: GenerateRequest, sink: EventSink) -> Result<(), String>;

    /// Aborts a generation (no-op if it already ended).
    fn abort(&self, id: RequestId);

    /// Occupancy and counters for `/metrics`.
    fn stats(&self) -> SchedulerStats;

    /// `Err(why)` once the engine can no longer serve.
    fn health(&self) -> Result<(), String>;

    /// Runs the engine's accounting check (scheduler, pages, slots, prefix tree); `Err`
    /// names the broken invariant. The default says that there is no check to run.
    fn check_integrity(&self) -> Result<(), String> {
        Err("this generator has no integrity check".into())
    }

    /// Ends every live generation with `Failed(why)` and refuses new ones (a server whose
    /// drain timed out calls it so clients get an error, not a cut connection). The default
    /// does nothing.
    fn stop(&self, why: &str) {
        let _ = why;
    }
}
