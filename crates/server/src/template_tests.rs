//! Unit tests of `template` (parity with jinja2 is tested from Python:
//! tests/test_chat_template_parity.py).

use super::*;
use serde_json::json;

fn render(
    template: &ChatTemplate,
    messages: Json,
    kwargs: Option<Json>,
) -> Result<String, TemplateError> {
    let kwargs = kwargs.map(|k| k.as_object().unwrap().clone());
    template.render(&ChatInput {
        messages: messages.as_array().unwrap(),
        tools: None,
        add_generation_prompt: true,
        kwargs: kwargs.as_ref(),
    })
}

#[test]
fn builtin_template_renders_thinking_on_and_off() {
    let template = ChatTemplate::builtin_qwen3_5();
    let messages = json!([{"role": "user", "content": "hi"}]);
    let on = render(&template, messages.clone(), None).unwrap();
    assert_eq!(
        on,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    );
    let off = render(&template, messages, Some(json!({"enable_thinking": false}))).unwrap();
    assert!(off.ends_with("<think>\n\n</think>\n\n"), "{off}");
}

#[test]
fn tool_call_arguments_as_json_string_are_parsed() {
    let template = ChatTemplate::builtin_qwen3_5();
    let messages = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
        {"role": "tool", "content": "sunny"},
    ]);
    let text = render(&template, messages, None).unwrap();
    assert!(text.contains(
        "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n"
    ));
    let bad = json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]);
    let err = render(&template, bad, None).unwrap_err().to_string();
    assert!(
        err.contains("messages[0].tool_calls[0] arguments: not valid JSON"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let template = ChatTemplate::builtin_qwen3_5();
    let err = render(&template, json!(["text"]), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("messages[0] is not an object"), "{err}");
    let err = render(
        &template,
        json!([{"role": "user", "content": "x"}]),
        Some(json!({"messages": []})),
    );
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("may not set 'messages'"));
    let err = render(&template, json!([]), None).unwrap_err().to_string();
    assert_eq!(err, "chat template error: No messages provided.");
    let err = ChatTemplate::from_source("{% if %}".into(), TemplateOrigin::Builtin).unwrap_err();
    assert!(err.to_string().contains("does not compile"), "{err}");
}

#[test]
fn resolution_order_and_special_tokens() {
    let dir = std::env::temp_dir().join(format!("ts-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({"chat_template": [{"name": "tool_use", "template": "T"},
                                          {"name": "default", "template": "D{{ bos_token }}"}],
                        "bos_token": {"content": "<s>"}});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let from_config = ChatTemplate::resolve(Some(&dir), None).unwrap();
    assert_eq!(
        from_config.origin(),
        &TemplateOrigin::TokenizerConfig(dir.join("tokenizer_config.json"))
    );
    assert_eq!(render(&from_config, json!([]), None).unwrap(), "D<s>");
    std::fs::write(dir.join("chat_template.jinja"), "F").unwrap();
    let from_file = ChatTemplate::resolve(Some(&dir), None).unwrap();
    assert_eq!(render(&from_file, json!([]), None).unwrap(), "F");
    std::fs::write(dir.join("override.jinja"), "O").unwrap();
    let overridden = ChatTemplate::resolve(Some(&dir), Some(&dir.join("override.jinja"))).unwrap();
    assert_eq!(
        overridden.origin(),
        &TemplateOrigin::Override(dir.join("override.jinja"))
    );
    let missing = ChatTemplate::resolve(None, Some(&dir.join("nope.jinja"))).unwrap_err();
    assert!(missing.to_string().contains("nope.jinja"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        ChatTemplate::resolve(None, None).unwrap().origin(),
        &TemplateOrigin::Builtin
    );
}

#[test]
fn shared_types_are_thread_safe() {
    // The server shares these across request tasks.
    fn shared<T: Send + Sync>() {}
    shared::<ChatTemplate>();
    shared::<crate::tokenizer::Tokenizer>();
    fn sendable<T: Send>() {}
    sendable::<crate::detokenize::IncrementalDecoder>();
    sendable::<Box<dyn crate::tool_parser::ToolCallParser>>();
    sendable::<crate::reasoning::ReasoningParser>();
}
