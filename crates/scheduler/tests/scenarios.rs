//! Scenario tests: the situations that broke other engines, each executed against the
//! simulated executor of `common` (which checks every plan against its own memory).
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{prompt, spec, Sim, State, EOS};
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
fn second_turn_hits_the_first_turn_up_to_its_last_partial_page() {
    for overlap in [false, true] {
        for (prompt_len, max_new) in [
            (30, 11),
            (30, 1),
            (32, 1),
            (29, 3),
            (8, 9),
            (13, 20),
            (64, 1),
        ] {
            let mut sim = Sim::new(config(4, 16), 129, PS, 9);
            let mut first = spec(1, prompt(3, prompt_len), max_new);
            first.ignore_eos = true;
            sim.submit(first.clone());
            sim.drain(overlap, 500);
            let turn1: Vec<u32> = first
                .prompt
                .iter()
                .chain(&sim.outputs[&1])
                .copied()
                .collect();
            assert_eq!(turn1.len(), prompt_len + max_new);
            let mut second = turn1.clone();
            second.extend(prompt(4, 9));
            sim.keep_plans = true;
            sim.submit(spec(2, second, 3));
            let plan = sim.schedule();
            let hit = plan.num_cached[0] as usize;
            let floor = turn1.len() / PS * PS;
            assert!(
                hit + PS >= floor,
                "turn 2 hit {hit} < {floor} - one page (turn 1: {})",
                turn1.len()
            );
            // Exactly: the full pages of turn 1 minus its last token (never computed).
            assert_eq!(
                hit,
                (turn1.len() - 1) / PS * PS,
                "prompt {prompt_len}, output {max_new}"
            );
            assert!(plan.cow_src_slots[0] > 0, "resumes from a checkpoint");
            sim.drain(overlap, 500);
            sim.check_outputs();
            let s = sim.sched.stats();
            assert_eq!(s.prefix_hit_tokens, hit as u64);
        }
    }
}

#[test]
fn requests_sharing_a_prefix_share_pages() {
    let system = prompt(5, 16);
    let with = |suffix_seed, len| {
        system
            .iter()
            .copied()
            .chain(prompt(suffix_seed, len))
            .collect::<Vec<_>>()
    };
    let mut sim = Sim::new(config(4, 64), 65, PS, 17);
    // A's prompt ends one token after the system prompt: its chunk snapshot lands at 16.
    let mut a = spec(1, with(6, 1), 30);
    a.ignore_eos = true;
    sim.submit(a);
    sim.step(false);
    let a_pages = sim.sched.resident_of(1).unwrap().page_table()[..4].to_vec();
    sim.submit(spec(2, with(7, 9), 30));
    let plan = sim.step(false);
    let b = plan
        .position_of(2)
        .unwrap_or_else(|| panic!("{plan:?} {:?}", sim.sched.stats()));
    assert_eq!(
        plan.num_cached[b], 16,
        "B resumes after the shared 16 tokens"
    );
    assert_eq!(&plan.pages_of(b)[..4], &a_pages[..], "B reads A's pages");
    // C diverges from A's path in the middle of a node without a checkpoint there: its first
    // chunk ends at the branching point so a snapshot is taken there, and after publishing
    // its page table points at the shared pages too.
    sim.submit(spec(3, with(8, 9)[..14].to_vec(), 30));
    sim.step(false);
    sim.drain(false, 500);
    sim.check_outputs();
    let s = sim.sched.stats();
    assert!(
        s.pages_cached <= 4 + 3 * 10,
        "shared pages are cached once: {s:?}"
    );
}

#[test]
fn kv_shared_without_checkpoint_is_deduplicated_on_publish() {
    let system = prompt(5, 16);
    let mut sim = Sim::new(config(4, 64), 65, PS, 17);
    let a: Vec<u32> = system.iter().copied().chain(prompt(6, 8)).collect(); // snapshot at 24
    let b: Vec<u32> = system.iter().copied().chain(prompt(7, 8)).collect();
    let mut a = spec(1, a, 5);
    a.ignore_eos = true;
    sim.submit(a);
    sim.step(false);
    sim.keep_plans = true;
    sim.submit(spec(2, b, 5));
    let plan = sim.step(false);
    let i = plan.position_of(2).unwrap();
    assert_eq!(
        plan.num_cached[i], 0,
        "no checkpoint on the shared path: nothing reusable"
    );
    assert_eq!(
        plan.tokens_of(i).len(),
        16,
        "first chunk stops at the branching point"
    );
    assert_eq!(plan.checkpoint_offsets[i], 16);
    let a_pages = sim.sched.resident_of(1).unwrap().page_table()[..4].to_vec();
    assert_eq!(
        &sim.sched.resident_of(2).unwrap().page_table()[..4],
        &a_pages[..],
        "dedup on publish"
    );
    sim.submit(spec(
        3,
        system.iter().copied().chain(prompt(9, 3)).collect(),
        5,
    ));
    let plan = sim.step(false);
    let i = plan.position_of(3).unwrap();
    assert_eq!(
        plan.num_cached[i], 16,
        "the branching-point checkpoint is reused"
    );
    sim.drain(false, 500);
    sim.check_outputs();
}

#[test]
fn chunked_prefill_with_budget_smaller_than_prompt() {
    let mut sim = Sim::new(config(2, 16), 65, PS, 9);
    sim.keep_plans = true;
    let p = prompt(9, 50);
    sim.submit(spec(1, p.clone(), 4));
    let mut chunks = Vec::new();
    while sim.sched.state_of(1) == Some(StateName::Prefilling) || chunks.is_empty() {
        let plan = sim.step(false);
        assert!(plan.num_tokens() <= 16);
        chunks.push((
            plan.num_cached[0],
            plan.tokens_of(0).to_vec(),
            plan.checkpoint_offsets[0],
            plan.sample[0],
        ));
    }
    let starts: Vec<u32> = chunks.iter().map(|c| c.0).collect();
    assert_eq!(starts, vec![0, 16, 32, 48]);
    let offsets: Vec<i32> = chunks.iter().map(|c| c.2).collect();
    assert_eq!(
        offsets,
        vec![16, 32, 48, -1],
        "snapshot at each chunk's last page boundary"
    );
    let samples: Vec<bool> = chunks.iter().map(|c| c.3).collect();
    assert_eq!(samples, vec![false, false, false, true]);
    let all: Vec<u32> = chunks.iter().flat_map(|c| c.1.clone()).collect();
    assert_eq!(all, p);
    // Each committed chunk is published: the prompt's pages up to 48 are in the cache now.
    assert_eq!(sim.sched.resident_of(1).unwrap().cached(), 48);
    sim.drain(false, 100);
    sim.check_outputs();
}

#[test]
fn mixed_prefill_and_decode_in_one_step() {
    let mut sim = Sim::new(config(4, 20), 65, PS, 9);
    sim.submit(spec(1, prompt(1, 6), 40));
    sim.step(true);
    sim.step(true); // request 1 now decodes
    sim.submit(spec(2, prompt(2, 30), 5));
    let plan = sim.step(true);
    assert_eq!(plan.request_ids, vec![1, 2]);
    assert_eq!(plan.tokens_of(0).len(), 1, "request 1 decodes");
    assert_eq!(
        plan.tokens_of(1).len(),
        16,
        "request 2 prefills the rest of the budget, page-aligned"
    );
    assert_eq!(plan.sample, vec![true, false]);
    assert_eq!(plan.cu_seqlens, vec![0, 1, 17]);
    sim.drain(true, 200);
    sim.check_outputs();
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
fn decode_state_checkpoint_is_the_state_after_its_offset() {
    // Independent check of the snapshot semantics: the checkpoint slot of a decode step that
    // crosses a page boundary is filled by the simulated executor at exactly `offset` tokens;
    // turn 2 copies it and the simulator verifies it against the KV (State::of(prefix)).
    let mut sim = Sim::new(config(2, 16), 65, PS, 9);
    sim.keep_plans = true;
    let mut s = spec(1, prompt(2, 5), 12);
    s.ignore_eos = true;
    sim.submit(s.clone());
    sim.drain(true, 100);
    let offsets: Vec<i32> = sim
        .plans
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.checkpoint_offsets[0])
        .collect();
    assert_eq!(
        offsets
            .iter()
            .filter(|&&o| o > 0)
            .copied()
            .collect::<Vec<_>>(),
        vec![4, 8, 12, 16]
    );
    let turn1: Vec<u32> = s.prompt.iter().chain(&sim.outputs[&1]).copied().collect();
    let next: Vec<u32> = turn1.iter().copied().chain([3, 4]).collect();
    sim.submit(spec(2, next, 2));
    let plan = sim.step(false);
    assert_eq!(plan.num_cached[0], 16);
    assert_eq!(State::of(&turn1[..16]).n, 16);
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
