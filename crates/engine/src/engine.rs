//! [`Engine`]: the handle other threads use to submit, abort and inspect; the loop itself
//! runs on its own thread (see `step_loop.rs`).

use std::sync::mpsc::{self, Receiver, Sender};

use crate::event::RequestSink;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokenspeed_scheduler::{RequestId, RequestSpec, Scheduler, SchedulerStats};

use crate::step_loop::StepLoop;
use crate::{EngineError, Executor, RequestEvent};

/// Why live requests fail when the engine is shut down.
const SHUT_DOWN: &str = "the engine was shut down";

/// How the loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Plan and launch step N+1 before collecting step N.
    pub overlap: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { overlap: true }
    }
}

/// A request to run.
#[derive(Debug)]
pub struct Submission<M> {
    /// What the scheduler needs (prompt, limits, sampling, stop ids).
    pub spec: RequestSpec,
    /// Top logprobs to return per token: `None` for no logprobs, `Some(0)` for only the
    /// sampled token's.
    pub logprobs: Option<u32>,
    /// Payload for the executor, handed to it when the request becomes resident.
    pub meta: M,
}

impl<M> Submission<M> {
    /// A submission without logprobs.
    pub fn new(spec: RequestSpec, meta: M) -> Self {
        Self {
            spec,
            logprobs: None,
            meta,
        }
    }
}

/// A message to the loop.
pub(crate) enum Command<M> {
    Submit(Submission<M>, Box<dyn RequestSink>),
    Abort(RequestId),
    /// Stop the loop; live requests fail with this message.
    Shutdown(String),
}

/// State shared between the handle and the loop. The scheduler lock is only held for
/// scheduling / committing, never while the executor runs.
pub(crate) struct Shared {
    pub scheduler: Mutex<Scheduler>,
    /// Why the loop stopped, once it has.
    pub stopped: Mutex<Option<String>>,
}

impl Shared {
    pub fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        self.scheduler
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn stop(&self, why: String) {
        let mut stopped = self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stopped.get_or_insert(why);
    }
}

/// Handle to a running engine thread. Dropping it shuts the thread down (without waiting).
pub struct Engine<M: Send + 'static> {
    shared: Arc<Shared>,
    commands: Sender<Command<M>>,
    thread: Option<JoinHandle<()>>,
}

impl<M: Send + 'static> Engine<M> {
    /// Starts the loop on a new thread, owning `scheduler` and `executor`.
    pub fn spawn<E>(
        scheduler: Scheduler,
        executor: E,
        options: EngineOptions,
    ) -> Result<Self, EngineError>
    where
        E: Executor<Meta = M> + 'static,
    {
        let shared = Arc::new(Shared {
            scheduler: Mutex::new(scheduler),
            stopped: Mutex::new(None),
        });
        let (commands, inbox) = mpsc::channel();
        let step_loop = StepLoop::new(Arc::clone(&shared), executor, inbox, options);
        let thread = std::thread::Builder::new()
            .name("tokenspeed-engine".into())
            .spawn(move || step_loop.run())
            .map_err(|e| EngineError::Spawn(e.to_string()))?;
        Ok(Self {
            shared,
            commands,
            thread: Some(thread),
        })
    }

    /// Queues a request; its events arrive on the returned receiver (the stream ends with
    /// `Finished` or `Failed`). Validation errors (duplicate id, empty prompt, too long) are
    /// reported as a `Failed` event.
    pub fn submit(&self, submission: Submission<M>) -> Result<Receiver<RequestEvent>, EngineError> {
        let (events, receiver) = mpsc::channel();
        self.submit_to(submission, Box::new(events))?;
        Ok(receiver)
    }

    /// Like [`Engine::submit`], with the events delivered to `sink` from the engine thread
    /// (no thread or channel of the caller's in between).
    pub fn submit_to(
        &self,
        submission: Submission<M>,
        sink: Box<dyn RequestSink>,
    ) -> Result<(), EngineError> {
        self.send(Command::Submit(submission, sink))
    }

    /// Aborts a request (a no-op if it already ended). Its stream gets `Finished` with
    /// [`FinishReason::Abort`](tokenspeed_scheduler::FinishReason::Abort).
    pub fn abort(&self, id: RequestId) -> Result<(), EngineError> {
        self.send(Command::Abort(id))
    }

    fn send(&self, command: Command<M>) -> Result<(), EngineError> {
        if let Some(why) = self.shared.stopped() {
            return Err(EngineError::Stopped(why));
        }
        self.commands
            .send(command)
            .map_err(|_| EngineError::Stopped("the engine thread exited".into()))
    }

    /// The scheduler's occupancy and counters.
    pub fn stats(&self) -> SchedulerStats {
        self.shared.scheduler().stats()
    }

    /// Runs the scheduler's and cache's accounting proof.
    pub fn check_integrity(&self) -> Result<(), EngineError> {
        self.shared
            .scheduler()
            .check_integrity()
            .map_err(|e| EngineError::Integrity(e.to_string()))
    }

    /// Why the loop stopped, if it has.
    pub fn stopped(&self) -> Option<String> {
        self.shared.stopped()
    }

    /// Stops the loop without waiting: every live request gets `Failed(why)` and later calls
    /// fail with [`EngineError::Stopped`]. Used when a server's drain times out.
    pub fn stop(&self, why: &str) {
        let _ = self.commands.send(Command::Shutdown(why.to_string()));
    }

    /// Stops the loop (live requests get `Failed`) and waits for the thread to exit.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown(SHUT_DOWN.into()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<M: Send + 'static> Drop for Engine<M> {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown(SHUT_DOWN.into()));
    }
}
