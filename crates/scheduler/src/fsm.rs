//! The request state machine. Each variant owns exactly the resources of its state; every
//! transition consumes the old state, so a page or slot can only move, never be duplicated
//! or forgotten, and an event the state does not accept comes back as a typed error together
//! with the untouched state.

use std::fmt;
use std::ops::Range;

use thiserror::Error;

use crate::{FinishReason, Resident};

/// Lifecycle of one request.
#[derive(Debug)]
pub enum Request {
    /// Queued (new, or preempted and waiting to be recomputed / resumed from the cache).
    /// Owns nothing.
    Waiting,
    /// Admitted; more prompt chunks remain to be planned. `window` is the newest planned
    /// chunk.
    Prefilling {
        /// Path lock, private pages, working slot, snapshot slots.
        resident: Box<Resident>,
        /// Token range of the newest planned chunk.
        window: Range<usize>,
    },
    /// Every known token is planned; each step decodes one more. The private pages cover the
    /// next step's token (reserved one step ahead, before the previous token is known).
    Decoding {
        /// Path lock, private pages, working slot, snapshot slots.
        resident: Box<Resident>,
    },
    /// Ended. Owns nothing.
    Finished(FinishReason),
}

/// Name of a [`Request`] variant, for errors and introspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateName {
    /// [`Request::Waiting`].
    Waiting,
    /// [`Request::Prefilling`].
    Prefilling,
    /// [`Request::Decoding`].
    Decoding,
    /// [`Request::Finished`].
    Finished,
}

/// The events of [`Request`]'s transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Waiting -> Prefilling: resources granted.
    Admit,
    /// Prefilling -> Decoding: the last prompt chunk was planned.
    PromptPlanned,
    /// Prefilling | Decoding -> Waiting: memory ran out.
    Preempt,
    /// Waiting | Prefilling | Decoding -> Finished: stop / length / error.
    Finish,
    /// Waiting | Prefilling | Decoding -> Finished(Abort).
    Abort,
}

/// An event the request's state does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("illegal transition: event {event:?} in state {state:?}")]
pub struct TransitionError {
    /// The refused event.
    pub event: Event,
    /// The state that refused it.
    pub state: StateName,
}

/// Result of a transition: the new state, or the untouched old one and why.
pub type Transition<T> = Result<T, (Request, TransitionError)>;

impl Request {
    /// The variant's name.
    pub fn name(&self) -> StateName {
        match self {
            Request::Waiting => StateName::Waiting,
            Request::Prefilling { .. } => StateName::Prefilling,
            Request::Decoding { .. } => StateName::Decoding,
            Request::Finished(_) => StateName::Finished,
        }
    }

    /// The resident resources, in the states that have them.
    pub fn resident(&self) -> Option<&Resident> {
        match self {
            Request::Prefilling { resident, .. } | Request::Decoding { resident } => Some(resident),
            _ => None,
        }
    }

    /// Mutable access to the resident resources, in the states that have them.
    pub fn resident_mut(&mut self) -> Option<&mut Resident> {
        match self {
            Request::Prefilling { resident, .. } | Request::Decoding { resident } => Some(resident),
            _ => None,
        }
    }

    fn refuse<T>(self, event: Event) -> Transition<T> {
        let state = self.name();
        Err((self, TransitionError { event, state }))
    }

    /// Waiting -> Prefilling with the granted resources (its first chunk not yet planned).
    pub fn admit(self, resident: Resident) -> Transition<Request> {
        match self {
            Request::Waiting => {
                let at = resident.computed();
                Ok(Request::Prefilling {
                    resident: Box::new(resident),
                    window: at..at,
                })
            }
            other => other.refuse(Event::Admit),
        }
    }

    /// Prefilling -> Decoding once the chunk ending at the last known token is planned.
    pub fn prompt_planned(self) -> Transition<Request> {
        match self {
            Request::Prefilling { resident, .. } => Ok(Request::Decoding { resident }),
            other => other.refuse(Event::PromptPlanned),
        }
    }

    /// Prefilling | Decoding -> Waiting; hands back the resources so the caller can publish
    /// what is committed before they are dropped.
    pub fn preempt(self) -> Transition<(Request, Box<Resident>)> {
        match self {
            Request::Prefilling { resident, .. } | Request::Decoding { resident } => {
                Ok((Request::Waiting, resident))
            }
            other => other.refuse(Event::Preempt),
        }
    }

    /// Waiting | Prefilling | Decoding -> Finished(`reason`); hands back the resources (if
    /// any) so the caller can publish what is committed before they are dropped.
    pub fn finish(self, reason: FinishReason) -> Transition<(Request, Option<Box<Resident>>)> {
        match self {
            Request::Waiting => Ok((Request::Finished(reason), None)),
            Request::Prefilling { resident, .. } | Request::Decoding { resident } => {
                Ok((Request::Finished(reason), Some(resident)))
            }
            other => other.refuse(Event::Finish),
        }
    }

    /// Any live state -> Finished(Abort), dropping (freeing) everything it owns.
    pub fn abort(self) -> Transition<Request> {
        match self {
            Request::Finished(_) => self.refuse(Event::Abort),
            _ => Ok(Request::Finished(FinishReason::Abort)),
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
