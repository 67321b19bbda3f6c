//! The state machine's refusals and the API's input validation.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{cache, prompt, spec};
use tokenspeed_scheduler::{
    Event, FinishReason, Request, RequestSpec, Resident, Scheduler, SchedulerConfig,
    SchedulerError, StateName,
};

fn resident() -> Resident {
    let cache = cache(9, 4, 5);
    let hit = cache.match_prefix(&[1, 2, 3]);
    let working = cache.state_pool().alloc().unwrap();
    let pages = cache.page_pool().alloc(1).unwrap();
    Resident::new(hit, working, pages)
}

#[test]
fn illegal_events_are_typed_errors_and_keep_the_state() {
    let (state, err) = Request::Waiting.prompt_planned().unwrap_err();
    assert_eq!(
        (state.name(), err.event, err.state),
        (StateName::Waiting, Event::PromptPlanned, StateName::Waiting)
    );
    let (state, err) = Request::Waiting.preempt().unwrap_err();
    assert_eq!(
        (state.name(), err.event),
        (StateName::Waiting, Event::Preempt)
    );
    let finished = Request::Finished(FinishReason::Length);
    let (state, err) = finished.abort().unwrap_err();
    assert_eq!(
        (state.name(), err.event),
        (StateName::Finished, Event::Abort)
    );
    let (state, _) = state.finish(FinishReason::Abort).unwrap_err();
    let (state, _) = state.admit(resident()).unwrap_err();
    assert!(matches!(state, Request::Finished(FinishReason::Length)));
    assert_eq!(
        err.to_string(),
        "illegal transition: event Abort in state Finished"
    );

    let prefilling = Request::Waiting.admit(resident()).unwrap();
    let (prefilling, err) = prefilling.admit(resident()).unwrap_err();
    assert_eq!(
        (err.event, err.state),
        (Event::Admit, StateName::Prefilling)
    );
    let decoding = prefilling.prompt_planned().unwrap();
    let (decoding, err) = decoding.prompt_planned().unwrap_err();
    assert_eq!(err.state, StateName::Decoding);
    let (waiting, res) = decoding.preempt().unwrap();
    assert_eq!(waiting.name(), StateName::Waiting);
    assert_eq!(res.working_slot(), 1);
}

#[test]
fn transitions_move_resources_and_dropping_frees_them() {
    let cache = cache(9, 4, 5);
    let before = cache.stats();
    let hit = cache.match_prefix(&[1, 2, 3]);
    let state = Request::Waiting.admit(Resident::new(
        hit,
        cache.state_pool().alloc().unwrap(),
        cache.page_pool().alloc(2).unwrap(),
    ));
    let state = state.unwrap().prompt_planned().unwrap();
    assert_eq!(cache.stats().pages_in_use, 2);
    assert_eq!(cache.stats().slots_in_use, 1);
    let aborted = state.abort().unwrap();
    assert!(matches!(aborted, Request::Finished(FinishReason::Abort)));
    assert_eq!(cache.stats(), before);
}

#[test]
fn submit_validates_its_input() {
    let config = SchedulerConfig {
        max_running: 2,
        max_step_tokens: 16,
        max_context: 40,
        ..Default::default()
    };
    let mut s = Scheduler::new(config, cache(9, 4, 5)).unwrap(); // 8 pages = 32 tokens
    assert_eq!(
        s.submit(spec(1, vec![], 4)),
        Err(SchedulerError::EmptyPrompt(1))
    );
    assert_eq!(
        s.submit(spec(1, prompt(1, 3), 0)),
        Err(SchedulerError::ZeroMaxNewTokens(1))
    );
    assert!(matches!(
        s.submit(spec(1, prompt(1, 40), 1)),
        Err(SchedulerError::PromptTooLong { .. })
    ));
    let never = s.submit(spec(1, prompt(1, 32), 1));
    assert_eq!(
        never,
        Err(SchedulerError::NeverFits {
            id: 1,
            needed: 9,
            pool: 8
        })
    );
    s.submit(spec(1, prompt(1, 31), 1)).unwrap();
    assert_eq!(
        s.submit(RequestSpec::new(1, vec![1], 1)),
        Err(SchedulerError::DuplicateId(1))
    );
    assert_eq!(s.abort(9), Err(SchedulerError::UnknownRequest(9)));
    assert_eq!(s.stop(9), Err(SchedulerError::UnknownRequest(9)));
    assert_eq!(s.state_of(1), Some(StateName::Waiting));
    s.check_integrity().unwrap();
}

#[test]
fn config_is_validated() {
    let cfg = |max_running, max_step_tokens| SchedulerConfig {
        max_running,
        max_step_tokens,
        ..Default::default()
    };
    for (bad, slots) in [(cfg(0, 64), 5), (cfg(8, 10), 5), (cfg(2, 64), 2)] {
        match Scheduler::new(bad, cache(9, 4, slots)) {
            Err(SchedulerError::Config(msg)) => assert!(!msg.is_empty()),
            other => panic!("accepted: {other:?}"),
        }
    }
    assert!(Scheduler::new(cfg(8, 11), cache(9, 4, 3)).is_ok());
}
