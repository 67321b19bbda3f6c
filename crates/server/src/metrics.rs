//! Prometheus metrics in the text exposition format (version 0.0.4). Counters and histograms
//! are kept here; occupancy gauges are read from the engine at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokenspeed_scheduler::SchedulerStats;

/// Latency buckets in seconds (TTFT, inter-token, end-to-end).
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    inner: Mutex<HistogramData>,
}

#[derive(Debug, Default)]
struct HistogramData {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let mut data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (bound, count) in BUCKETS.iter().zip(data.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        data.count += 1;
        data.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(data.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", data.count);
        let _ = writeln!(out, "{name}_sum {}", data.sum);
        let _ = writeln!(out, "{name}_count {}", data.count);
    }
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP responses by (route, status).
    responses: Mutex<BTreeMap<(String, u16), u64>>,
    /// Prompt tokens of admitted generations.
    pub prompt_tokens: AtomicU64,
    /// Generated tokens.
    pub generation_tokens: AtomicU64,
    /// Generations aborted because the client went away.
    pub client_aborts: AtomicU64,
    /// Time to first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of a choice.
    pub inter_token: Histogram,
    /// Time from admission to the end of a choice.
    pub e2e: Histogram,
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: usize) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

impl Metrics {
    /// Counts one HTTP response.
    pub fn record_response(&self, route: &str, status: u16) {
        let mut responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        *responses.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    /// The exposition text.
    pub fn render(&self, stats: &SchedulerStats) -> String {
        let mut out = String::new();
        let name = "tokenspeed_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP responses by route and status code."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        let responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, status), count) in responses.iter() {
            let _ = writeln!(
                out,
                "{name}{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        drop(responses);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "tokenspeed_num_requests_running",
            "Requests resident in the engine (prefilling or decoding).",
            stats.running,
        );
        gauge(
            &mut out,
            "tokenspeed_num_requests_waiting",
            "Requests queued in the engine.",
            stats.waiting,
        );
        gauge(
            &mut out,
            "tokenspeed_kv_pages_total",
            "Allocatable KV-cache pages.",
            stats.pages_total,
        );
        gauge(
            &mut out,
            "tokenspeed_kv_pages_used",
            "KV pages owned by running requests.",
            stats.pages_used,
        );
        gauge(
            &mut out,
            "tokenspeed_kv_pages_cached",
            "KV pages held by the prefix cache.",
            stats.pages_cached,
        );
        gauge(
            &mut out,
            "tokenspeed_kv_pages_free",
            "KV pages in the free list.",
            stats.pages_free,
        );
        gauge(
            &mut out,
            "tokenspeed_state_slots_total",
            "Allocatable recurrent-state slots.",
            stats.slots_total,
        );
        gauge(
            &mut out,
            "tokenspeed_state_slots_used",
            "State slots owned by running requests.",
            stats.slots_used,
        );
        gauge(
            &mut out,
            "tokenspeed_state_slots_cached",
            "Checkpoint slots held by the prefix cache.",
            stats.slots_cached,
        );
        counter(
            &mut out,
            "tokenspeed_prompt_tokens_total",
            "Prompt tokens of admitted generations.",
            load(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "tokenspeed_generation_tokens_total",
            "Generated tokens.",
            load(&self.generation_tokens),
        );
        counter(
            &mut out,
            "tokenspeed_prefix_cache_hit_tokens_total",
            "Prompt tokens served from the prefix cache.",
            stats.prefix_hit_tokens,
        );
        counter(
            &mut out,
            "tokenspeed_prefix_cache_queried_tokens_total",
            "Prompt tokens looked up in the prefix cache.",
            stats.prefix_requested_tokens,
        );
        counter(
            &mut out,
            "tokenspeed_preemptions_total",
            "Requests preempted to free memory.",
            stats.preemptions,
        );
        counter(
            &mut out,
            "tokenspeed_client_aborts_total",
            "Generations aborted because the client disconnected.",
            load(&self.client_aborts),
        );
        self.ttft.render(
            &mut out,
            "tokenspeed_time_to_first_token_seconds",
            "Time from admission to the first generated token.",
        );
        self.inter_token.render(
            &mut out,
            "tokenspeed_inter_token_latency_seconds",
            "Time between consecutive tokens of one choice.",
        );
        self.e2e.render(
            &mut out,
            "tokenspeed_e2e_request_latency_seconds",
            "Time from admission to the end of a choice.",
        );
        out
    }
}
