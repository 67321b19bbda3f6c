//! Cache scenarios: multi-turn hits, shared prefixes, chunked prefill and its snapshots,
//! mixed batches. Each runs against the simulated executor of `common`, which checks every
//! plan against its own memory.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use common::{prompt, spec, Sim, EOS};
use tokenspeed_scheduler::{SchedulerConfig, StateName};

const PS: usize = 4;

fn config(max_running: usize, max_step_tokens: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_running,
        max_step_tokens,
        max_context: 4096,
        eos_token_ids: vec![EOS],
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
    // The simulated executor copies the checkpoint into the working slot and checks it is
    // State::of(turn1[..16]): the snapshot taken at offset 16 is the state after 16 tokens.
    let plan = sim.step(false);
    assert_eq!(plan.num_cached[0], 16);
    assert!(plan.cow_src_slots[0] > 0 && plan.copy_src.len() == 1);
}
