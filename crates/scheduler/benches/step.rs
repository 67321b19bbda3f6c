//! `schedule()` + `commit()` of a decode step with 256 running requests (1k-token prompts,
//! 64-token pages), without and with overlap (step N+1 planned before step N is committed).
//! Target: under 50 µs per step.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tokenspeed_cache::{PagePool, RadixCache, StatePool};
use tokenspeed_scheduler::{RequestSpec, Scheduler, SchedulerConfig, StepResult};

const REQUESTS: u64 = 256;
const PROMPT: usize = 1024;
const PAGE: usize = 64;
/// Decode steps run on one scheduler before it is rebuilt (contexts grow 1024 -> 1536).
const STEPS_PER_SETUP: usize = 512;

/// A scheduler whose 256 requests have finished their prefill and decode.
fn decoding_scheduler() -> Scheduler {
    let pages = REQUESTS as usize * (PROMPT + STEPS_PER_SETUP + 2 * PAGE) / PAGE + 1;
    let cache = RadixCache::new(
        PagePool::new(pages, PAGE).expect("page pool"),
        StatePool::new(REQUESTS as usize * 3 + 2).expect("state pool"),
    );
    let config = SchedulerConfig {
        max_running: 256,
        max_step_tokens: 16384,
        ..Default::default()
    };
    let mut sched = Scheduler::new(config, cache).expect("config");
    for id in 0..REQUESTS {
        // Distinct prompts: no prefix sharing, every request owns its pages.
        let prompt = (0..PROMPT as u32)
            .map(|t| (t * 31 + id as u32 * 7919) % 50_000 + 1)
            .collect();
        let mut spec = RequestSpec::new(id, prompt, 1 << 20);
        spec.ignore_eos = true;
        sched.submit(spec).expect("submit");
    }
    while sched.stats().prefilling > 0 || sched.stats().waiting > 0 {
        let plan = sched.schedule();
        sched
            .commit(StepResult {
                step: plan.step,
                sampled: vec![7; plan.num_samples()],
            })
            .expect("commit");
    }
    assert_eq!(sched.stats().decoding, REQUESTS as usize);
    sched
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_step_256");
    group.bench_function("schedule+commit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut sched = decoding_scheduler();
                for _ in 0..STEPS_PER_SETUP.min((iters - done) as usize) {
                    let start = Instant::now();
                    let plan = sched.schedule();
                    let result = StepResult {
                        step: plan.step,
                        sampled: vec![7; plan.num_samples()],
                    };
                    black_box(sched.commit(result).expect("commit"));
                    total += start.elapsed();
                    assert_eq!(plan.len(), REQUESTS as usize);
                    done += 1;
                }
            }
            total
        })
    });
    group.bench_function("overlap_schedule+commit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut sched = decoding_scheduler();
                let mut prev = sched.schedule();
                for _ in 0..STEPS_PER_SETUP.min((iters - done) as usize) {
                    let start = Instant::now();
                    let plan = sched.schedule(); // inputs are markers for prev's samples
                    let result = StepResult {
                        step: prev.step,
                        sampled: vec![7; prev.num_samples()],
                    };
                    black_box(sched.commit(result).expect("commit"));
                    total += start.elapsed();
                    assert_eq!(plan.prev_token_src.len(), REQUESTS as usize);
                    prev = plan;
                    done += 1;
                }
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
