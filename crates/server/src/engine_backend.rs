//! [`EngineGenerator`]: the [`Generator`] of a real [`Engine`]. The engine thread sends each
//! request's events straight into the HTTP request's (async, unbounded) channel.

use std::sync::Arc;

use tokenspeed_engine::{Engine, Submission};
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
        self.engine
            .submit_to(submission, Box::new(sink))
            .map_err(|e| e.to_string())?;
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
