//! Errors of the engine handle.

use tokenspeed_scheduler::SchedulerError;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The scheduler refused the request or the call.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The engine thread stopped (executor failure or shutdown); the message says why.
    #[error("engine stopped: {0}")]
    Stopped(String),
    /// The engine thread could not be started.
    #[error("cannot start the engine thread: {0}")]
    Spawn(String),
    /// The cache or scheduler accounting is broken.
    #[error("integrity check failed: {0}")]
    Integrity(String),
}
