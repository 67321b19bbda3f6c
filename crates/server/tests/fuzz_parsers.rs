#![allow(clippy::unwrap_used)] // tests may unwrap
//! Property fuzzing of everything that reads model output or request data: the tool-call
//! parsers (Qwen XML, Hermes), the reasoning splitter, the stop-string matcher, the
//! incremental detokenizer and chat-template rendering. Inputs mix arbitrary unicode with
//! near-miss markup, cut into arbitrary chunks. Nothing may panic; streamed results must equal
//! whole-text results; stop strings cut exactly where a reference search says.

mod common;

pub use tokenspeed_server::tokenizer; // for common::test_support

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tokenspeed_server::detokenize::IncrementalDecoder;
use tokenspeed_server::reasoning::{split_reasoning, ReasoningParser};
use tokenspeed_server::stop::StopMatcher;
use tokenspeed_server::template::{ChatInput, ChatTemplate};
use tokenspeed_server::tool_parser::{collect, parse_complete, ToolParserKind};

/// Markup pieces, whole and broken, that steer the parsers into every state.
const PIECES: &[&str] = &[
    "<tool_call>",
    "</tool_call>",
    "<tool_call",
    "</tool_",
    "<function=",
    "<function=get_weather>",
    "</function>",
    "<parameter=",
    "<parameter=city>",
    "<parameter=days>",
    "</parameter>",
    "<think>",
    "</think>",
    "</thi",
    "<",
    ">",
    "=",
    "\n",
    " ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\\",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
    "{\"name\": 1}",
    "\"arguments\"",
    "null",
    "3",
    "-1e999",
    "Paris",
    "é",
    "你好",
    "🤷",
    "\u{0}",
    "\u{FFFD}",
];

/// Text made of markup pieces and arbitrary strings.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(PIECES).prop_map(str::to_string),
        1 => any::<String>(),
        1 => "[ -~]{0,6}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|parts| parts.concat())
}

/// `text` cut at arbitrary char boundaries.
fn chunks(text: &str, cuts: &[usize]) -> Vec<String> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let mut at: Vec<usize> = cuts
        .iter()
        .filter(|_| !bounds.is_empty())
        .map(|c| bounds[c % bounds.len()])
        .collect();
    at.push(text.len());
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for end in at {
        out.push(text[start..end].to_string());
        start = end;
    }
    out
}

/// Built once: building it per case would dominate the test's time.
fn test_tokenizer() -> Arc<tokenizer::Tokenizer> {
    static TOKENIZER: std::sync::OnceLock<Arc<tokenizer::Tokenizer>> = std::sync::OnceLock::new();
    Arc::clone(TOKENIZER.get_or_init(|| Arc::new(common::test_support::byte_level_tokenizer())))
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..12)
}

fn tools() -> Vec<Json> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                       "when": {"type": "array"}}}}}),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn tool_parsers_agree_streamed_and_whole(text in text(), cuts in cuts(), hermes: bool) {
        let kind = if hermes { ToolParserKind::Hermes } else { ToolParserKind::QwenXml };
        let whole = parse_complete(kind.parser(&tools(), "call_").as_mut(), &text);
        let mut parser = kind.parser(&tools(), "call_");
        let mut events = Vec::new();
        for chunk in chunks(&text, &cuts) {
            events.extend(parser.push(&chunk));
        }
        events.extend(parser.finish());
        let streamed = collect(&events);
        prop_assert_eq!(&streamed, &whole);
        for call in &whole.calls {
            let arguments: Json = serde_json::from_str(&call.arguments).unwrap();
            prop_assert!(arguments.is_object(), "{}", call.arguments);
        }
    }

    #[test]
    fn reasoning_agrees_streamed_and_whole(text in text(), cuts in cuts(), thinking: bool) {
        let (reasoning, content) = split_reasoning(&text, thinking);
        let mut parser = ReasoningParser::new(thinking);
        let (mut r, mut c) = (String::new(), String::new());
        for chunk in chunks(&text, &cuts) {
            let delta = parser.push(&chunk);
            r.push_str(&delta.reasoning);
            c.push_str(&delta.content);
        }
        let last = parser.finish();
        r.push_str(&last.reasoning);
        c.push_str(&last.content);
        prop_assert_eq!((r, c), (reasoning, content));
    }

    /// Streamed, the stop string that completes first wins (as in vLLM, which checks after
    /// each token), so where a longer stop starts earlier but completes later the cut
    /// depends on the chunking. What holds for any chunking: the output is a prefix of the
    /// text, holds no whole stop string, and ends where a stop string starts (or is the whole
    /// text when none occurs). In one chunk, the earliest-starting stop wins.
    #[test]
    fn stop_strings_cut_at_the_first_match(
        text in text(),
        cuts in cuts(),
        stops in prop::collection::vec(
            prop_oneof![prop::sample::select(PIECES).prop_map(str::to_string), ".{0,3}"], 0..4),
    ) {
        let stops_used: Vec<&str> = stops.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        let earliest = stops_used.iter().filter_map(|s| text.find(s)).min();
        let run = |chunks: Vec<String>| {
            let mut matcher = StopMatcher::new(stops.clone());
            let mut out = String::new();
            for chunk in chunks {
                out.push_str(&matcher.push(&chunk).text);
            }
            if !matcher.is_stopped() {
                out.push_str(&matcher.finish());
            }
            (out, matcher.is_stopped())
        };
        let (out, stopped) = run(chunks(&text, &cuts));
        prop_assert_eq!(stopped, earliest.is_some());
        prop_assert!(text.starts_with(&out));
        prop_assert!(stops_used.iter().all(|s| !out.contains(s)), "{:?}", out);
        if stopped {
            let rest = &text[out.len()..];
            prop_assert!(stops_used.iter().any(|s| rest.starts_with(s)), "{:?}", rest);
        } else {
            prop_assert_eq!(&out, &text);
        }
        let (whole, _) = run(vec![text.clone()]);
        prop_assert_eq!(whole.as_str(), earliest.map_or(text.as_str(), |at| &text[..at]));
    }

    #[test]
    fn incremental_detokenizer_equals_whole_decode(
        ids in prop::collection::vec(0..common::test_support::vocab_len() + 3, 0..40),
        skip_special: bool,
    ) {
        let tokenizer = test_tokenizer();
        let mut decoder = IncrementalDecoder::new(Arc::clone(&tokenizer), skip_special);
        let mut out = String::new();
        let mut failed = false;
        for &id in &ids {
            match decoder.step(id) {
                Ok(text) => out.push_str(&text),
                Err(_) => failed = true, // an unknown id: an error, never a panic
            }
        }
        if let Ok(rest) = decoder.finish() {
            out.push_str(&rest);
        }
        if !failed && ids.iter().all(|&i| i < common::test_support::vocab_len()) {
            prop_assert_eq!(out, tokenizer.decode(&ids, skip_special).unwrap());
        }
    }
}

/// Arbitrary JSON, biased towards the shapes chat templates look at.
fn json_value() -> impl Strategy<Value = Json> {
    let key = prop_oneof![
        prop::sample::select(
            &[
                "role",
                "content",
                "tool_calls",
                "name",
                "arguments",
                "function",
                "type",
                "text",
                "reasoning_content",
                "tool_call_id",
                "parameters"
            ][..]
        )
        .prop_map(str::to_string),
        "[a-z]{1,4}",
    ];
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        prop::sample::select(
            &[
                "user",
                "assistant",
                "system",
                "tool",
                "developer",
                "text",
                "function",
                "<tool_call>",
                "</think>",
                "{{ 1 }}",
                "{% raw %}"
            ][..]
        )
        .prop_map(Json::from),
        any::<String>().prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((key.clone(), inner), 0..5)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// A message shaped like OpenAI's (role, content, maybe tool calls) with arbitrary values.
fn message() -> impl Strategy<Value = Json> {
    let role = prop::sample::select(&["user", "assistant", "system", "tool", "developer", "x"][..]);
    let content = prop_oneof![text().prop_map(Json::from), json_value()];
    let call = (json_value(), prop_oneof![json_value(), text().prop_map(Json::from)]).prop_map(
        |(name, arguments)| json!({"type": "function", "function": {"name": name, "arguments": arguments}}),
    );
    let calls = prop::option::of(prop::collection::vec(call, 0..3));
    (role, content, calls, prop::option::of(text())).prop_map(
        |(role, content, calls, reasoning)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(calls) = calls {
                m["tool_calls"] = Json::Array(calls);
            }
            if let Some(reasoning) = reasoning {
                m["reasoning_content"] = Json::from(reasoning);
            }
            m
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn chat_template_renders_or_refuses_any_input(
        messages in prop::collection::vec(prop_oneof![3 => message(), 1 => json_value()], 0..5),
        tools in prop::option::of(prop::collection::vec(json_value(), 0..3)),
        kwargs in prop::option::of(json_value()),
        add_generation_prompt: bool,
    ) {
        let template = ChatTemplate::builtin_qwen3_5();
        let kwargs = kwargs.and_then(|k| k.as_object().cloned());
        let input = ChatInput {
            messages: &messages,
            tools: tools.as_deref(),
            add_generation_prompt,
            kwargs: kwargs.as_ref(),
        };
        // Ok or a clean error; a panic fails the test.
        let _ = template.render(&input);
    }
}
