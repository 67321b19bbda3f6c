//! Property test over random interleavings of submit / schedule / commit / abort / stop with
//! tiny pools (forcing eviction and preemption), in and out of overlap mode.
//!
//! After every operation `check_integrity()` holds (cache accounting + no page or slot owned
//! by two requests) and the simulated executor of `common` checks every plan against its own
//! memory (KV spells the known tokens, the working state is the state of exactly them, no
//! slot or KV position written twice in a step). At the end a bounded drain must end every
//! request, give back every page and slot, and every completed output must equal the
//! scheduler-independent reference. Cases: `PROPTEST_CASES` (default 256).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{prompt, spec, Sim, EOS};
use proptest::prelude::*;
use tokenspeed_scheduler::{FinishReason, SchedulerConfig, SchedulerError};

#[derive(Debug, Clone)]
enum Op {
    /// New conversation: `len` tokens of shared base prompt `base`, then `own` private ones.
    Submit {
        base: u8,
        len: u8,
        own: u8,
        max_new: u8,
        ignore_eos: bool,
        min_tokens: u8,
    },
    /// Next turn of an ended request: its prompt + output + `extra` tokens.
    FollowUp {
        pick: u8,
        extra: u8,
        max_new: u8,
    },
    Schedule,
    Commit,
    Step,
    Abort(u8),
    Stop(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u8, 0..24u8, 1..12u8, 1..16u8, any::<bool>(), 0..4u8).prop_map(
            |(base, len, own, max_new, ignore_eos, min_tokens)| Op::Submit { base, len, own, max_new, ignore_eos, min_tokens }
        ),
        2 => (any::<u8>(), 1..10u8, 1..10u8).prop_map(|(pick, extra, max_new)| Op::FollowUp { pick, extra, max_new }),
        4 => Just(Op::Schedule),
        4 => Just(Op::Commit),
        6 => Just(Op::Step),
        1 => any::<u8>().prop_map(Op::Abort),
        1 => any::<u8>().prop_map(Op::Stop),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    page_size: usize,
    pages: usize,
    slots: usize,
    max_running: usize,
    extra_budget: usize,
    max_context: usize,
    overlap: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(1usize), Just(2), Just(4)],
        3..20usize,
        3..9usize,
        1..5usize,
        0..12usize,
        24..72usize,
        any::<bool>(),
    )
        .prop_map(
            |(page_size, pages, slots, max_running, extra_budget, max_context, overlap)| Setup {
                page_size,
                pages: pages * 4 / page_size.max(1) + 1,
                slots,
                max_running,
                extra_budget,
                max_context,
                overlap,
            },
        )
}

fn run(setup: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = SchedulerConfig {
        max_running: setup.max_running,
        max_step_tokens: setup.max_running - 1 + setup.page_size + setup.extra_budget,
        max_context: setup.max_context,
        eos_token_ids: vec![EOS],
    };
    let mut sim = Sim::new(config, setup.pages, setup.page_size, setup.slots);
    let mut next_id = 0u64;
    let mut ids = Vec::new();
    for op in ops {
        match op {
            Op::Submit {
                base,
                len,
                own,
                max_new,
                ignore_eos,
                min_tokens,
            } => {
                let mut tokens = prompt(1000 + u64::from(base), usize::from(len));
                tokens.extend(prompt(next_id, usize::from(own)));
                let mut s = spec(next_id, tokens, usize::from(max_new));
                s.ignore_eos = ignore_eos;
                s.min_tokens = usize::from(min_tokens);
                try_submit(&mut sim, s, &mut ids)?;
                next_id += 1;
            }
            Op::FollowUp {
                pick,
                extra,
                max_new,
            } => {
                let done: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|id| sim.finished.contains_key(id))
                    .collect();
                if let Some(&prev) = done.get(usize::from(pick) % done.len().max(1)) {
                    let mut tokens = sim.specs[&prev].prompt.clone();
                    tokens.extend(&sim.outputs[&prev]);
                    tokens.extend(prompt(next_id, usize::from(extra)));
                    try_submit(
                        &mut sim,
                        spec(next_id, tokens, usize::from(max_new)),
                        &mut ids,
                    )?;
                    next_id += 1;
                }
            }
            Op::Schedule => drop(sim.schedule()),
            Op::Commit => drop(sim.commit()),
            Op::Step => drop(sim.step(setup.overlap)),
            Op::Abort(pick) | Op::Stop(pick) if !ids.is_empty() => {
                let id = ids[usize::from(pick) % ids.len()];
                if !sim.finished.contains_key(&id) {
                    if matches!(op, Op::Abort(_)) {
                        sim.abort(id);
                    } else {
                        sim.sched
                            .stop(id)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        sim.finished.insert(id, FinishReason::Stop { token: None });
                    }
                }
            }
            Op::Abort(_) | Op::Stop(_) => {}
        }
        sim.sched
            .check_integrity()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    while sim.commit() {}
    sim.drain(setup.overlap, 20_000);
    for id in &ids {
        prop_assert!(sim.finished.contains_key(id), "request {} never ended", id);
    }
    let stats = sim.sched.stats();
    prop_assert_eq!(
        (
            stats.pages_used,
            stats.slots_used,
            stats.running,
            stats.waiting
        ),
        (0, 0, 0, 0)
    );
    prop_assert_eq!(stats.pages_free + stats.pages_cached, stats.pages_total);
    sim.check_outputs();
    if std::env::var_os("TS_CASE_STATS").is_some() {
        let errors = sim
            .finished
            .values()
            .filter(|r| matches!(r, FinishReason::Error(_)))
            .count();
        let s = stats;
        eprintln!(
            "CASE ids={} preempt={} hit={} req={} cached={} errors={errors}",
            ids.len(),
            s.preemptions,
            s.prefix_hit_tokens,
            s.prefix_requested_tokens,
            s.pages_cached
        );
    }
    Ok(())
}

fn try_submit(
    sim: &mut Sim,
    s: tokenspeed_scheduler::RequestSpec,
    ids: &mut Vec<u64>,
) -> Result<(), TestCaseError> {
    let id = s.id;
    match sim.sched.submit(s.clone()) {
        Ok(()) => {
            sim.specs.insert(id, s);
            sim.outputs.insert(id, Vec::new());
            ids.push(id);
            Ok(())
        }
        Err(SchedulerError::NeverFits { .. } | SchedulerError::PromptTooLong { .. }) => Ok(()),
        Err(e) => Err(TestCaseError::fail(e.to_string())),
    }
}

proptest! {
    #[test]
    fn random_interleavings_keep_every_invariant(setup in setup(), ops in prop::collection::vec(op(), 1..120)) {
        run(setup, ops)?;
    }
}
