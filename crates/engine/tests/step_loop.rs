#![allow(clippy::unwrap_used)] // tests may unwrap
//! The engine loop with a deterministic fake executor: the "model" answers
//! `f(last input token, position)`, resolving `PREV_STEP_TOKEN` inputs from its own previous
//! samples like the real executor. Overlap must not change any output, must launch step N+1
//! before collecting step N, and failures must reach every stream.

use std::sync::{Arc, Mutex};

use tokenspeed_cache::{PagePool, RadixCache, StatePool};
use tokenspeed_engine::{
    Engine, EngineOptions, Executor, ExecutorError, Launch, RequestEvent, StepOutput, Submission,
};
use tokenspeed_scheduler::{
    FinishReason, RequestSpec, Scheduler, SchedulerConfig, PREV_STEP_TOKEN,
};

fn next_token(last: u32, position: u32) -> u32 {
    (last.wrapping_mul(31) + position * 7 + 3) % 997
}

#[derive(Default)]
struct Fake {
    prev: Vec<u32>,
    launched: Vec<(u64, Vec<u32>)>,
    log: Arc<Mutex<Vec<String>>>,
    fail_at_step: Option<u64>,
}

impl Executor for Fake {
    type Meta = ();

    fn launch(&mut self, work: Launch<'_, ()>) -> Result<(), ExecutorError> {
        let plan = work.plan;
        if Some(plan.step) == self.fail_at_step {
            return Err(ExecutorError::new("injected failure"));
        }
        let mut ids = plan.input_ids.clone();
        for (&dst, &src) in plan.prev_token_dst.iter().zip(&plan.prev_token_src) {
            ids[dst as usize] = self.prev[src as usize];
        }
        assert!(!ids.contains(&PREV_STEP_TOKEN));
        let sampled: Vec<u32> = plan
            .logits_indices
            .iter()
            .map(|&i| next_token(ids[i as usize], plan.positions[i as usize]))
            .collect();
        self.prev = sampled.clone();
        self.launched.push((plan.step, sampled));
        self.log
            .lock()
            .unwrap()
            .push(format!("launch {}", plan.step));
        Ok(())
    }

    fn collect(&mut self, step: u64) -> Result<StepOutput, ExecutorError> {
        self.log.lock().unwrap().push(format!("collect {step}"));
        let (s, sampled) = self.launched.remove(0);
        assert_eq!(s, step);
        Ok(StepOutput::tokens_only(sampled))
    }
}

fn scheduler() -> Scheduler {
    let cache = RadixCache::new(PagePool::new(200, 4).unwrap(), StatePool::new(40).unwrap());
    let config = SchedulerConfig {
        max_running: 4,
        max_step_tokens: 12,
        ..Default::default()
    };
    Scheduler::new(config, cache).unwrap()
}

/// Reference: what the fake model generates for `prompt`, one token at a time.
fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    for _ in 0..n {
        let pos = tokens.len() as u32 - 1;
        tokens.push(next_token(*tokens.last().unwrap(), pos));
    }
    tokens[prompt.len()..].to_vec()
}

fn collect_tokens(events: std::sync::mpsc::Receiver<RequestEvent>) -> (Vec<u32>, RequestEvent) {
    let mut tokens = Vec::new();
    for event in events {
        match event {
            RequestEvent::Token(t) => tokens.push(t.token),
            end => return (tokens, end),
        }
    }
    panic!("stream closed without an end event");
}

fn run(overlap: bool) -> (Vec<Vec<u32>>, Vec<String>) {
    let fake = Fake::default();
    let log = Arc::clone(&fake.log);
    let engine = Engine::spawn(scheduler(), fake, EngineOptions { overlap }).unwrap();
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| (0..3 + 5 * i).collect()).collect();
    let streams: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let spec = RequestSpec::new(i as u64, p.clone(), 7);
            engine.submit(Submission::new(spec, ())).unwrap()
        })
        .collect();
    let mut outputs = Vec::new();
    for (prompt, stream) in prompts.iter().zip(streams) {
        let (tokens, end) = collect_tokens(stream);
        assert_eq!(tokens, expected(prompt, 7));
        assert!(matches!(
            end,
            RequestEvent::Finished {
                reason: FinishReason::Length,
                ..
            }
        ));
        outputs.push(tokens);
    }
    engine.check_integrity().unwrap();
    engine.shutdown();
    let log = log.lock().unwrap().clone();
    (outputs, log)
}

#[test]
fn overlap_launches_ahead_and_changes_nothing() {
    let (plain, plain_log) = run(false);
    let (overlapped, log) = run(true);
    assert_eq!(plain, overlapped);
    // Without overlap: launch N, collect N strictly alternate.
    for pair in plain_log.chunks(2) {
        let step = pair[0].trim_start_matches("launch ");
        assert_eq!(pair[1], format!("collect {step}"));
    }
    // With overlap, step N+1 is launched before step N is collected (all but the last step).
    let at = |entry: String| log.iter().position(|e| *e == entry);
    let steps = log.iter().filter(|e| e.starts_with("launch")).count();
    for n in 0..steps - 1 {
        let (ahead, collected) = (at(format!("launch {}", n + 1)), at(format!("collect {n}")));
        assert!(ahead.unwrap() < collected.unwrap(), "step {n}: {log:?}");
    }
    assert!(steps > 5);
}

#[test]
fn executor_failure_fails_every_live_request() {
    let fake = Fake {
        fail_at_step: Some(2),
        ..Fake::default()
    };
    let engine = Engine::spawn(scheduler(), fake, EngineOptions::default()).unwrap();
    let streams: Vec<_> = (0..3)
        .map(|i| {
            let spec = RequestSpec::new(i, vec![1, 2, 3], 50);
            engine.submit(Submission::new(spec, ())).unwrap()
        })
        .collect();
    for stream in streams {
        let (_, end) = collect_tokens(stream);
        assert!(matches!(end, RequestEvent::Failed(ref m) if m.contains("injected failure")));
    }
    assert!(engine.stopped().unwrap().contains("injected failure"));
    let again = engine.submit(Submission::new(RequestSpec::new(9, vec![1], 1), ()));
    assert!(again.is_err());
}

#[test]
fn rejected_submission_and_abort() {
    let engine = Engine::spawn(scheduler(), Fake::default(), EngineOptions::default()).unwrap();
    let empty = engine
        .submit(Submission::new(RequestSpec::new(1, vec![], 3), ()))
        .unwrap();
    assert!(matches!(collect_tokens(empty).1, RequestEvent::Failed(_)));
    let long = engine
        .submit(Submission::new(
            RequestSpec::new(2, vec![5; 9], 100_000),
            (),
        ))
        .unwrap();
    let first = long.recv().unwrap();
    assert!(matches!(first, RequestEvent::Token(_)));
    engine.abort(2).unwrap();
    let (_, end) = collect_tokens(long);
    assert!(matches!(
        end,
        RequestEvent::Finished {
            reason: FinishReason::Abort,
            ..
        }
    ));
    let stats = engine.stats();
    assert_eq!((stats.pages_used, stats.slots_used), (0, 0));
    engine.check_integrity().unwrap();
    engine.shutdown();
}
