#![allow(clippy::unwrap_used)] // tests may unwrap
//! Executor faults: a failed step fails only the requests of the uncollected steps, the
//! engine recovers (resets the executor) and serves the next requests with correct outputs
//! and clean accounting; a fatal error, or failures step after step, stop the engine and fail
//! every live request instead of leaving clients waiting.

use std::collections::HashSet;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use tokenspeed_cache::{PagePool, RadixCache, StatePool};
use tokenspeed_engine::{
    Engine, EngineOptions, Executor, ExecutorError, Launch, RequestEvent, StepOutput, Submission,
    MAX_CONSECUTIVE_STEP_FAILURES,
};
use tokenspeed_scheduler::{FinishReason, RequestSpec, Scheduler, SchedulerConfig};

/// The fake model: the next token is a function of the last input token and its position.
fn next_token(last: u32, position: u32) -> u32 {
    (last.wrapping_mul(31) + position * 7 + 3) % 997
}

fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    for _ in 0..n {
        let pos = tokens.len() as u32 - 1;
        tokens.push(next_token(*tokens.last().unwrap(), pos));
    }
    tokens[prompt.len()..].to_vec()
}

/// Where and how the fake fails.
#[derive(Default, Clone)]
struct Faults {
    launch: HashSet<u64>,
    collect: HashSet<u64>,
    /// Every launch from this step on fails.
    launch_from: Option<u64>,
    fatal: bool,
}

/// A fake executor that keeps device-like state (previous samples, launched steps) which a
/// failed step leaves inconsistent until `reset`.
struct Faulty {
    faults: Faults,
    prev: Option<Vec<u32>>,
    launched: Vec<(u64, Vec<u32>)>,
}

impl Faulty {
    fn new(faults: Faults) -> Self {
        Self {
            faults,
            prev: None,
            launched: Vec::new(),
        }
    }

    fn error(&self, what: &str, step: u64) -> ExecutorError {
        let message = format!("injected {what} fault at step {step}");
        match self.faults.fatal {
            true => ExecutorError::fatal(message),
            false => ExecutorError::new(message),
        }
    }
}

impl Executor for Faulty {
    type Meta = ();

    fn launch(&mut self, work: Launch<'_, ()>) -> Result<(), ExecutorError> {
        let plan = work.plan;
        if self.faults.launch.contains(&plan.step)
            || self.faults.launch_from.is_some_and(|s| plan.step >= s)
        {
            return Err(self.error("launch", plan.step));
        }
        let mut ids = plan.input_ids.clone();
        for (&dst, &src) in plan.prev_token_dst.iter().zip(&plan.prev_token_src) {
            // After a reset no surviving request may read the failed step's tokens.
            let prev = self
                .prev
                .as_ref()
                .expect("decode input from a discarded step");
            ids[dst as usize] = prev[src as usize];
        }
        let sampled: Vec<u32> = plan
            .logits_indices
            .iter()
            .map(|&i| next_token(ids[i as usize], plan.positions[i as usize]))
            .collect();
        self.prev = Some(sampled.clone());
        self.launched.push((plan.step, sampled));
        Ok(())
    }

    fn collect(&mut self, step: u64) -> Result<StepOutput, ExecutorError> {
        if self.faults.collect.contains(&step) {
            return Err(self.error("collect", step)); // the step stays launched
        }
        let (s, sampled) = self.launched.remove(0);
        assert_eq!(s, step, "collect out of order");
        Ok(StepOutput::tokens_only(sampled))
    }

    fn reset(&mut self) -> Result<(), ExecutorError> {
        self.prev = None;
        self.launched.clear();
        Ok(())
    }
}

fn engine(faults: Faults, overlap: bool) -> Engine<()> {
    let cache = RadixCache::new(PagePool::new(200, 4).unwrap(), StatePool::new(40).unwrap());
    let config = SchedulerConfig {
        max_running: 4,
        max_step_tokens: 12,
        ..Default::default()
    };
    let scheduler = Scheduler::new(config, cache).unwrap();
    Engine::spawn(scheduler, Faulty::new(faults), EngineOptions { overlap }).unwrap()
}

fn submit(engine: &Engine<()>, id: u64, prompt: &[u32], n: usize) -> Receiver<RequestEvent> {
    let spec = RequestSpec::new(id, prompt.to_vec(), n);
    engine.submit(Submission::new(spec, ())).unwrap()
}

/// Tokens and the end event; panics if the stream stays silent (a hung client).
fn outcome(events: Receiver<RequestEvent>) -> (Vec<u32>, RequestEvent) {
    let mut tokens = Vec::new();
    loop {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(RequestEvent::Token(t)) => tokens.push(t.token),
            Ok(end) => return (tokens, end),
            Err(e) => panic!("no end event: {e}"),
        }
    }
}

fn assert_idle(engine: &Engine<()>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.stats().steps_in_flight > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = engine.stats();
    let busy = (
        s.running,
        s.waiting,
        s.steps_in_flight,
        s.pages_used,
        s.slots_used,
    );
    assert_eq!(busy, (0, 0, 0, 0, 0), "{s:?}");
    engine.check_integrity().unwrap();
}

fn prompt(i: u64) -> Vec<u32> {
    (0..3 + 4 * i as u32)
        .map(|t| t * 13 % 97 + i as u32)
        .collect()
}

/// Six requests (four run at once, two wait), a fault at one step, then six more requests.
fn one_step_fault(faults: Faults, overlap: bool) {
    let engine = engine(faults, overlap);
    let streams: Vec<_> = (0..6).map(|i| submit(&engine, i, &prompt(i), 8)).collect();
    let mut failed = 0;
    for (i, stream) in (0..6).zip(streams) {
        match outcome(stream) {
            (_, RequestEvent::Failed(message)) => {
                assert!(message.contains("injected"), "{message}");
                failed += 1;
            }
            (tokens, RequestEvent::Finished { reason, .. }) => {
                assert_eq!(reason, FinishReason::Length);
                assert_eq!(tokens, expected(&prompt(i), 8), "request {i}");
            }
            (_, other) => panic!("request {i}: {other:?}"),
        }
    }
    // Only the requests of the failed steps fail: never all six (two were waiting).
    assert!((1..=4).contains(&failed), "{failed} failed");
    assert_eq!(engine.stopped(), None);
    assert_idle(&engine);
    // The engine serves the next requests with correct outputs.
    let streams: Vec<_> = (10..16)
        .map(|i| submit(&engine, i, &prompt(i), 8))
        .collect();
    for (i, stream) in (10..16).zip(streams) {
        let (tokens, end) = outcome(stream);
        assert!(matches!(end, RequestEvent::Finished { .. }), "{end:?}");
        assert_eq!(tokens, expected(&prompt(i), 8), "request {i}");
    }
    assert_idle(&engine);
    engine.shutdown();
}

#[test]
fn a_failed_launch_fails_its_requests_and_the_engine_recovers() {
    for overlap in [false, true] {
        for step in [0, 3, 6] {
            let faults = Faults {
                launch: HashSet::from([step]),
                ..Faults::default()
            };
            one_step_fault(faults, overlap);
        }
    }
}

#[test]
fn a_failed_collect_fails_its_requests_and_the_engine_recovers() {
    for overlap in [false, true] {
        for step in [0, 2, 5] {
            let faults = Faults {
                collect: HashSet::from([step]),
                ..Faults::default()
            };
            one_step_fault(faults, overlap);
        }
    }
}

#[test]
fn a_fatal_error_stops_the_engine_and_fails_every_live_request() {
    let faults = Faults {
        launch: HashSet::from([3]),
        fatal: true,
        ..Faults::default()
    };
    let engine = engine(faults, true);
    let streams: Vec<_> = (0..6).map(|i| submit(&engine, i, &prompt(i), 8)).collect();
    for stream in streams {
        match outcome(stream).1 {
            RequestEvent::Failed(m) => assert!(m.contains("fatal"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let why = engine.stopped().unwrap();
    assert!(why.contains("injected launch fault at step 3"), "{why}");
    assert!(engine
        .submit(Submission::new(RequestSpec::new(9, vec![1], 1), ()))
        .is_err());
}

#[test]
fn failures_step_after_step_stop_the_engine() {
    let faults = Faults {
        launch_from: Some(2),
        ..Faults::default()
    };
    let engine = engine(faults, true);
    // More requests than can fail in the allowed failed steps: the rest must not hang.
    let streams: Vec<_> = (0..12).map(|i| submit(&engine, i, &prompt(i), 8)).collect();
    for stream in streams {
        let (_, end) = outcome(stream);
        assert!(matches!(end, RequestEvent::Failed(_)), "{end:?}");
    }
    let why = engine.stopped().unwrap();
    let in_a_row = format!("failed {MAX_CONSECUTIVE_STEP_FAILURES} steps in a row");
    assert!(why.contains(&in_a_row), "{why}");
}

#[test]
fn stop_fails_live_requests_with_its_reason() {
    let engine = engine(Faults::default(), true);
    let stream = submit(&engine, 1, &prompt(1), 100_000);
    assert!(matches!(stream.recv().unwrap(), RequestEvent::Token(_)));
    engine.stop("the server is shutting down");
    match outcome(stream).1 {
        RequestEvent::Failed(m) => assert_eq!(m, "the server is shutting down"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        engine.stopped().as_deref(),
        Some("the server is shutting down")
    );
}
