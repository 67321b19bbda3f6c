//! [`EngineGenerator`]: the [`Generator`] of a real [`Engine`]. Each submission gets a small
//! forwarding thread that moves events from the engine's (blocking) channel to the HTTP
//! request's (async) channel; it ends with the request.

use std::sync::Arc;

use tokenspeed_engine::{Engine, RequestEvent, Submission};
use tokenspeed_scheduler::{RequestId, RequestSpec, SchedulerStats};

use crate::generator::{EventSink, GenerateRequest, Generator};

/// Builds the executor's per-request payload from the request (e.g. a Python object).
pub type MetaFactory<M> = Arc<dyn Fn(&RequestSpec) -> Result<M, String> + Send + Sync>;

/// A running engine serving HTTP requests.
pub struct EngineGenerator<M: Send + 'static> {
    engine: Engine<M>,
    make_meta: MetaFactory<M>,
}

impl<M: Send + 'static> EngineGenerator<M> {
    /// Wraps `engine`; `make_meta` builds each submission's executor payload.
    pub fn new(engine: Engine<M>, make_meta: MetaFactory<M>) -> Self {
        Self { engine, make_meta }
    }

    /// Stops the engine thread and waits for it.
    pub fn shutdown(self) {
        self.engine.shutdown();
    }
}

impl<M: Send + 'static> Generator for EngineGenerator<M> {
    fn submit(&self, request: GenerateRequest, sink: EventSink) -> Result<(), String> {
        let meta = (self.make_meta)(&request.spec)?;
        let submission = Submission {
            spec: request.spec,
            logprobs: request.logprobs,
            meta,
        };
        let events = self.engine.submit(submission).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("tokenspeed-forward".into())
            .spawn(move || {
                for event in events.iter() {
                    let last = !matches!(event, RequestEvent::Token(_));
                    if !sink.send(event) || last {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the event forwarder: {e}"))?;
        Ok(())
    }

    fn abort(&self, id: RequestId) {
        // An engine that already stopped has failed the request itself.
        let _ = self.engine.abort(id);
    }

    fn stats(&self) -> SchedulerStats {
        self.engine.stats()
    }

    fn health(&self) -> Result<(), String> {
        match self.engine.stopped() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn check_integrity(&self) -> Result<(), String> {
        self.engine.check_integrity().map_err(|e| e.to_string())
    }

    fn stop(&self, why: &str) {
        self.engine.stop(why);
    }
}
