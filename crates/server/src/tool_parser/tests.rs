//! Tests of both tool-call dialects, including the chunking property.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn tools() -> Vec<Json> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}, "ratio": {"type": "number"},
            "metric": {"type": "boolean"}, "tags": {"type": "array"}, "opts": {"type": "object"},
            "maybe": {"type": ["integer", "null"]}}}}}),
    ]
}

fn parse(kind: ToolParserKind, text: &str) -> ParsedOutput {
    parse_complete(kind.parser(&tools(), "call_").as_mut(), text)
}

fn parse_chunked(kind: ToolParserKind, chunks: &[&str]) -> (ParsedOutput, Vec<ToolCallEvent>) {
    let mut parser = kind.parser(&tools(), "call_");
    let mut events: Vec<ToolCallEvent> = chunks.iter().flat_map(|c| parser.push(c)).collect();
    events.extend(parser.finish());
    (collect(&events), events)
}

fn args(call: &ToolCall) -> Json {
    serde_json::from_str(&call.arguments).unwrap_or_else(|e| panic!("{}: {e}", call.arguments))
}

const XML_CALL: &str = "Let me check.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan\nFrancisco \"CA\"\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=ratio>\n0.5\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=tags>\n[\"a\", 1]\n</parameter>\n<parameter=opts>\n{\"x\": null}\n</parameter>\n<parameter=maybe>\nnull\n</parameter>\n<parameter=untyped>\n42\n</parameter>\n<parameter=free>\nsome <b>text</b> &amp;\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=noop>\n</function>\n</tool_call>\n\nDone.";

#[test]
fn xml_calls_are_typed_by_schema() {
    let out = parse(ToolParserKind::QwenXml, XML_CALL);
    assert_eq!(out.content, "Let me check.\n\nDone.");
    assert_eq!(out.calls.len(), 2);
    assert_eq!(
        (out.calls[0].id.as_str(), out.calls[0].name.as_str()),
        ("call_0", "get_weather")
    );
    assert_eq!(
        args(&out.calls[0]),
        json!({"city": "San\nFrancisco \"CA\"", "days": 3, "ratio": 0.5, "metric": true,
               "tags": ["a", 1], "opts": {"x": null}, "maybe": null, "untyped": 42,
               "free": "some <b>text</b> &amp;"})
    );
    assert!(out.calls[0]
        .arguments
        .starts_with("{\"city\": \"San\\nFrancisco"));
    assert_eq!(
        (out.calls[1].name.as_str(), out.calls[1].arguments.as_str()),
        ("noop", "{}")
    );
}

#[test]
fn xml_string_values_stream_incrementally() {
    let text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nabcdefghij\n</parameter>\n</function>\n</tool_call>";
    let chunks: Vec<&str> = (0..text.len()).map(|i| &text[i..i + 1]).collect();
    let (out, events) = parse_chunked(ToolParserKind::QwenXml, &chunks);
    let fragments: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            ToolCallEvent::Arguments { fragment, .. } => Some(fragment.as_str()),
            _ => None,
        })
        .collect();
    assert!(fragments.len() >= 10, "{fragments:?}");
    assert!(matches!(events[0], ToolCallEvent::Start { index: 0, .. }));
    assert_eq!(out.calls[0].arguments, "{\"city\": \"abcdefghij\"}");
}

#[test]
fn xml_malformed_and_truncated() {
    for text in [
        "a <tool_call>\nnot a call</tool_call> b",
        "<tool_call>",
        "x<tool_call>\n<function=bad\nname>",
        "<tool_call><tool_call>",
    ] {
        let out = parse(ToolParserKind::QwenXml, text);
        assert_eq!(out.content, text);
        assert!(out.calls.is_empty(), "{text}");
    }
    // Cut off by the length limit inside a value: the call is closed, arguments stay JSON.
    let out = parse(
        ToolParserKind::QwenXml,
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar",
    );
    assert_eq!(args(&out.calls[0]), json!({"city": "Par"}));
    // A missing </parameter> is tolerated.
    let out = parse(
        ToolParserKind::QwenXml,
        "<tool_call><function=f><parameter=a>1<parameter=b>x</function></tool_call>",
    );
    assert_eq!(args(&out.calls[0]), json!({"a": 1, "b": "x"}));
}

#[test]
fn hermes_calls() {
    let text = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": [1]}\"}\n</tool_call>";
    let out = parse(ToolParserKind::Hermes, text);
    assert_eq!(out.content, "Sure.\n");
    assert_eq!(out.calls.len(), 2);
    assert_eq!(out.calls[0].arguments, "{\"city\": \"Paris\", \"days\": 2}");
    assert_eq!(
        (out.calls[1].name.as_str(), args(&out.calls[1])),
        ("f", json!({"a": [1]}))
    );
    for bad in [
        "<tool_call>{\"name\": 3}</tool_call>",
        "x <tool_call>{oops</tool_call> y",
        "<tool_call>{\"arguments\": {}}",
    ] {
        let out = parse(ToolParserKind::Hermes, bad);
        assert_eq!((out.content.as_str(), out.calls.len()), (bad, 0));
    }
    // Unclosed at the end of the output but complete JSON: still a call.
    let out = parse(ToolParserKind::Hermes, "<tool_call>{\"name\": \"g\"}");
    assert_eq!(
        (out.calls[0].name.as_str(), out.calls[0].arguments.as_str()),
        ("g", "{}")
    );
}

#[test]
fn parser_names() {
    assert_eq!(
        "qwen3_coder".parse::<ToolParserKind>().unwrap(),
        ToolParserKind::QwenXml
    );
    assert_eq!(
        "hermes".parse::<ToolParserKind>().unwrap(),
        ToolParserKind::Hermes
    );
    assert!("mistral"
        .parse::<ToolParserKind>()
        .unwrap_err()
        .contains("mistral"));
    assert_eq!(
        ToolParserKind::for_model_type("qwen3_5_moe"),
        ToolParserKind::QwenXml
    );
    assert_eq!(
        ToolParserKind::for_model_type("qwen2"),
        ToolParserKind::Hermes
    );
}

const PIECES: [&str; 16] = [
    "Hello ", "é你好 ", "<", "<tool", "\n", "  ", "</tool_call>", "<tool_call>", "text after",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome <b>\n</parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>",
    "<tool_call><function=f><parameter=x>\n[1, \"</\"]\n</parameter></function></tool_call>",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nunfinished ",
    "<tool_call>\n{\"name\": \"h\", \"arguments\": {\"k\": \"v <\"}}\n</tool_call>",
    "<tool_call>{\"name\": ",
    "<tool_call>\n<function=",
    "</parameter>",
];

fn chunk<'a>(text: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|c| c % (text.len() + 1))
        .filter(|c| text.is_char_boundary(*c))
        .collect();
    cuts.sort_unstable();
    let mut last = 0;
    let mut out = Vec::new();
    for cut in cuts.into_iter().chain([text.len()]) {
        out.push(&text[last..cut]);
        last = cut;
    }
    out
}

proptest! {
    #[test]
    fn prop_any_chunking_gives_the_same_result(
        picks in prop::collection::vec(0..PIECES.len(), 0..8),
        cuts in prop::collection::vec(0usize..10_000, 0..12),
        xml in any::<bool>(),
    ) {
        let text: String = picks.iter().map(|&i| PIECES[i]).collect();
        let kind = if xml { ToolParserKind::QwenXml } else { ToolParserKind::Hermes };
        let whole = parse(kind, &text);
        let (chunked, _) = parse_chunked(kind, &chunk(&text, &cuts));
        prop_assert_eq!(&whole, &chunked);
        for call in &whole.calls {
            prop_assert!(serde_json::from_str::<serde_json::Map<String, Json>>(&call.arguments).is_ok(), "{}", call.arguments);
        }
        // No call recognisable -> the text comes back unchanged.
        let marker = if xml { "<function=" } else { "\"name\"" };
        if !text.contains(marker) {
            prop_assert_eq!(&whole.content, &text);
        }
    }
}
