//! Lifecycle scenarios: abort in every state, stale results, preemption and resume, requests
//! that can never fit. Each runs against the simulated executor of `common`, which checks
//! every plan against its own memory.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{prompt, spec, Sim, EOS};
use tokenspeed_scheduler::{FinishReason, RequestError, SchedulerConfig, StateName, StepResult};

const PS: usize = 4;

fn config(max_running: usize, max_step_tokens: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_running,
        max_step_tokens,
        max_context: 4096,
        eos_token_ids: vec![EOS],
    }
}

fn assert_nothing_owned(sim: &Sim) {
    sim.sched.check_integrity().unwrap();
    let s = sim.sched.stats();
    assert_eq!((s.pages_used, s.slots_used), (0, 0), "{s:?}");
    assert_eq!(s.pages_free + s.pages_cached, s.pages_total);
    assert_eq!(s.slots_free + s.slots_cached, s.slots_total);
    assert_eq!((s.running, s.waiting), (0, 0));
}

#[test]
fn abort_in_every_state_frees_everything() {
    // (setup steps before abort, expected state at abort)
    type Setup = fn(&mut Sim);
    let cases: [(&str, Setup); 6] = [
        ("waiting", |_| {}),
        ("prefilling, chunk in flight", |s| drop(s.schedule())),
        ("prefilling, chunk committed", |s| drop(s.step(false))),
        ("decoding, prefill in flight", |s| {
            for _ in 0..3 {
                s.step(false);
            }
            s.schedule();
        }),
        ("decoding, two steps in flight", |s| {
            for _ in 0..4 {
                s.step(false);
            }
            s.schedule();
            s.schedule();
        }),
        ("decoding, committed", |s| {
            for _ in 0..6 {
                s.step(true);
            }
        }),
    ];
    for (name, setup) in cases {
        let mut sim = Sim::new(config(2, 16), 33, PS, 9);
        let mut s = spec(1, prompt(1, 40), 50);
        s.ignore_eos = true;
        sim.submit(s);
        setup(&mut sim);
        let state = sim.sched.state_of(1).unwrap();
        sim.abort(1);
        let in_flight = sim.results.len();
        let mut stale = 0;
        while let Some(r) = sim.results.pop_front() {
            let out = sim.sched.commit(r).unwrap();
            assert!(
                out.tokens.is_empty() && out.finished.is_empty(),
                "{name}: stale result applied"
            );
            stale += out.stale_rows;
        }
        assert_eq!(
            stale, in_flight,
            "{name} ({state:?}): every in-flight row is stale"
        );
        assert_nothing_owned(&sim);
        assert!(
            sim.sched.abort(1).is_err(),
            "{name}: second abort must be refused"
        );
        assert!(sim.sched.schedule().is_empty());
    }
}

#[test]
fn abort_after_preemption_frees_everything() {
    // 6 usable pages; two requests of 10 prompt tokens each need 3 pages, then a 4th.
    let mut sim = Sim::new(config(2, 24), 7, PS, 9);
    for id in [1, 2] {
        let mut s = spec(id, prompt(id, 10), 20);
        s.ignore_eos = true;
        sim.submit(s);
    }
    while sim.sched.preemptions_of(2) == Some(0) {
        sim.step(false);
        sim.sched.check_integrity().unwrap();
    }
    assert_eq!(sim.sched.state_of(2), Some(StateName::Waiting));
    assert_eq!(sim.sched.stats().preemptions, 1);
    sim.abort(2);
    sim.abort(1);
    while sim.commit() {}
    assert_nothing_owned(&sim);
}

#[test]
fn result_after_finish_is_ignored() {
    for stop_by_server in [false, true] {
        let mut sim = Sim::new(config(2, 32), 33, PS, 9);
        sim.submit(spec(1, prompt(7, 10), if stop_by_server { 10 } else { 1 }));
        let prefill = sim.schedule();
        let decode = sim.schedule(); // overlap: planned before the prefill's token is known
        assert_eq!(
            decode.prev_token_src,
            vec![0],
            "decode input is the prefill's sample"
        );
        assert_eq!(decode.positions, vec![10]);
        if stop_by_server {
            sim.commit();
            sim.sched.stop(1).unwrap();
        } else {
            sim.commit();
            assert_eq!(sim.finished[&1], FinishReason::Length);
        }
        let late = sim.results.pop_front().unwrap();
        assert_eq!(late.step, prefill.step + 1);
        let out = sim.sched.commit(late).unwrap();
        assert_eq!(
            (out.tokens.len(), out.finished.len(), out.stale_rows),
            (0, 0, 1)
        );
        assert_eq!(
            sim.outputs[&1].len(),
            1,
            "only the prefill's token was applied"
        );
        assert_nothing_owned(&sim);
    }
}

#[test]
fn preempt_then_resume_gives_the_reference_tokens() {
    for overlap in [false, true] {
        let mut sim = Sim::new(config(2, 8), 9, PS, 9); // 8 usable pages = 32 tokens
        sim.keep_plans = true;
        for id in [1, 2] {
            let mut s = spec(id, prompt(10 + id, 6), 14); // 20 tokens = 5 pages each
            s.ignore_eos = true;
            sim.submit(s);
        }
        let mut at_preemption = None;
        for _ in 0..200 {
            if sim.sched.is_idle() {
                break;
            }
            sim.step(overlap);
            sim.sched.check_integrity().unwrap();
            if at_preemption.is_none() && sim.sched.preemptions_of(2) == Some(1) {
                at_preemption = Some((sim.plans.len(), sim.sched.tokens_of(2).unwrap().to_vec()));
            }
        }
        assert!(sim.sched.is_idle());
        let (plans_before, before) = at_preemption.expect("request 2 was preempted");
        assert!(
            before.len() > 6,
            "request 2 had produced tokens before preemption"
        );
        // The re-admission recomputes / resumes exactly the tokens known at preemption: its
        // prefill rows continue from the cache hit and the last one ends at the preempted
        // length and samples the next token.
        let rows: Vec<_> = sim.plans[plans_before..]
            .iter()
            .filter_map(|p| p.position_of(2).map(|i| (p, i)))
            .collect();
        let hit = rows[0].0.num_cached[rows[0].1] as usize;
        assert!(hit.is_multiple_of(PS));
        let mut resumed = Vec::new();
        for (p, i) in rows {
            assert_eq!(p.num_cached[i] as usize, hit + resumed.len());
            resumed.extend_from_slice(p.tokens_of(i));
            if p.sample[i] {
                break;
            }
        }
        assert_eq!(
            resumed,
            before[hit..],
            "resumed prefill covers the known tokens"
        );
        assert_eq!(sim.finished[&2], FinishReason::Length);
        assert_eq!(
            sim.outputs[&2].len(),
            14,
            "max_new_tokens counts tokens from before and after"
        );
        sim.check_outputs();
        assert_nothing_owned(&sim);
    }
}

#[test]
fn a_request_that_can_never_fit_fails_instead_of_looping() {
    // 4 usable pages = 16 tokens; the request wants 10 + 100.
    let mut sim = Sim::new(config(2, 8), 5, PS, 9);
    let mut s = spec(1, prompt(1, 10), 100);
    s.ignore_eos = true;
    sim.submit(s);
    sim.drain(false, 100);
    match sim.finished[&1] {
        FinishReason::Error(RequestError::OutOfMemory {
            context_tokens: 17,
            pool_pages: 4,
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        sim.outputs[&1].len(),
        7,
        "tokens up to the pool's capacity were produced"
    );
    sim.check_outputs();
    assert_nothing_owned(&sim);
}

#[test]
fn commit_errors_are_typed() {
    let mut sim = Sim::new(config(2, 16), 33, PS, 9);
    assert!(sim
        .sched
        .commit(StepResult {
            step: 0,
            sampled: vec![]
        })
        .is_err());
    sim.submit(spec(1, prompt(1, 5), 3));
    let plan = sim.sched.schedule();
    let wrong_len = sim.sched.commit(StepResult {
        step: plan.step,
        sampled: vec![],
    });
    assert!(matches!(
        wrong_len,
        Err(tokenspeed_scheduler::SchedulerError::ResultLength { .. })
    ));
    let wrong_step = sim.sched.commit(StepResult {
        step: plan.step + 1,
        sampled: vec![1],
    });
    assert!(matches!(
        wrong_step,
        Err(tokenspeed_scheduler::SchedulerError::StepOutOfOrder { .. })
    ));
    sim.sched
        .commit(StepResult {
            step: plan.step,
            sampled: vec![1],
        })
        .unwrap();
}
