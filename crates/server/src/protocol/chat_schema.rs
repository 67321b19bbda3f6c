//! Documentation-only schemas of the chat request's free-form fields (`messages`, `tools`,
//! `tool_choice`, `chat_template_kwargs`). The requests still deserialize these fields as
//! `serde_json::Value` so that `validate` can answer a bad one with a 400 naming it; these
//! types only describe, in `/openapi.json`, what that validation and the chat template accept.
//! They are never constructed (`Serialize` is derived only for its `serde` attributes).

use serde::Serialize;
use utoipa::ToSchema;

/// A chat message; `role` selects which kind. Fields beyond the ones listed are passed to the
/// chat template as they are.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessageSchema {
    /// Instructions; the built-in Qwen3.5 template takes one, as the first message.
    System {
        /// The text, or a list of text parts.
        content: Option<MessageContentSchema>,
    },
    /// Instructions (the newer OpenAI name of `system`); only templates that know this role
    /// render it (the built-in Qwen3.5 template answers 400).
    Developer {
        /// The text, or a list of text parts.
        content: Option<MessageContentSchema>,
    },
    /// A user turn.
    User {
        /// The text, or a list of text parts.
        content: Option<MessageContentSchema>,
    },
    /// An earlier answer of the model.
    Assistant {
        /// The answer text, or a list of text parts (null when the answer is only tool calls).
        content: Option<MessageContentSchema>,
        /// The answer's reasoning (`reasoning` and `thinking` are accepted as aliases).
        reasoning_content: Option<String>,
        /// Calls the model made; with `tools` given, each must name a declared function.
        tool_calls: Option<Vec<ToolCallSchema>>,
    },
    /// The result of a tool call.
    Tool {
        /// The result text, or a list of text parts.
        content: Option<MessageContentSchema>,
        /// The id of the call this answers; passed to the template (the built-in Qwen3.5
        /// template pairs results with calls by their order instead).
        tool_call_id: Option<String>,
    },
}

/// A message's `content`: a string or a list of text parts (the only part type accepted).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContentSchema {
    /// The text.
    Text(String),
    /// Text parts, concatenated.
    Parts(Vec<TextPartSchema>),
}

/// A text part of a message's `content`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TextPartSchema {
    /// Always `text`.
    pub r#type: TextTypeSchema,
    /// The text.
    pub text: String,
}

/// The `text` part type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextTypeSchema {
    /// A text part.
    Text,
}

/// The `function` tool type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionTypeSchema {
    /// A function tool.
    Function,
}

/// A tool call in an assistant message of the conversation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolCallSchema {
    /// The call's id (not checked; tool messages may refer to it).
    pub id: Option<String>,
    /// `function` (OpenAI's only kind; not checked).
    pub r#type: Option<String>,
    /// The call.
    pub function: ToolCallFunctionSchema,
}

/// The function part of a tool call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolCallFunctionSchema {
    /// The function's name.
    pub name: String,
    /// The arguments: a JSON object, or a string holding one (the OpenAI wire format).
    #[schema(nullable = false)]
    pub arguments: Option<ToolArgumentsSchema>,
}

/// Tool-call arguments: an object, or the text of a JSON object.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ToolArgumentsSchema {
    /// The text of a JSON object, e.g. `"{\"city\": \"Paris\"}"`.
    Text(JsonObjectTextSchema),
    /// The arguments by name.
    #[schema(value_type = Object)]
    Object(serde_json::Map<String, serde_json::Value>),
}

/// The text of a JSON object. The pattern (braces around, JSON whitespace outside) is only a
/// necessary condition: JSON Schema cannot say "parses as JSON", the server checks that (400).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(pattern = r"^[ \t\n\r]*\{[\s\S]*\}[ \t\n\r]*$")]
pub struct JsonObjectTextSchema(pub String);

/// A function the model may call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolSchema {
    /// Always `function`.
    pub r#type: FunctionTypeSchema,
    /// The function.
    pub function: FunctionDefinitionSchema,
}

/// A function's definition, shown to the model through the chat template.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionDefinitionSchema {
    /// The name the model calls it by.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    /// What the function does.
    pub description: Option<String>,
    /// A JSON schema of the arguments object.
    pub parameters: Option<FunctionParametersSchema>,
}

/// A JSON schema of a function's arguments; keywords beyond these are passed on as given.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FunctionParametersSchema {
    /// Always `object` when given.
    #[schema(nullable = false)]
    pub r#type: Option<ObjectTypeSchema>,
    /// The arguments' schemas by name.
    #[schema(nullable = false, value_type = Option<Object>)]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `object` JSON-schema type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectTypeSchema {
    /// A JSON object.
    Object,
}

/// `tool_choice`: a mode, or one function that must be called.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ToolChoiceSchema {
    /// `none`: no calls are parsed; `auto`: the model may call; `required`: it must call one
    /// of `tools` (needs a non-empty `tools` and a server started with a tool parser).
    Mode(ToolChoiceModeSchema),
    /// The model must call this function, which must be one of `tools`.
    Named(NamedToolChoiceSchema),
}

/// The `tool_choice` modes.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceModeSchema {
    /// Do not parse calls: everything is content.
    None,
    /// Parse calls if the model makes them (the default).
    Auto,
    /// The model must call one of the tools.
    Required,
}

/// `{"type": "function", "function": {"name": ...}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamedToolChoiceSchema {
    /// `function` (may be omitted).
    #[schema(nullable = false)]
    pub r#type: Option<FunctionTypeSchema>,
    /// The function to call.
    pub function: NamedFunctionSchema,
}

/// The function a named `tool_choice` forces.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamedFunctionSchema {
    /// One of the `tools`' names.
    pub name: String,
}

/// Extra chat-template variables. Any name but the request's own (`messages`, `tools`,
/// `documents`, `add_generation_prompt`, which are 400) is passed to the template.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatTemplateKwargsSchema {
    /// `false` skips the model's reasoning (the template opens an empty `<think>` block).
    pub enable_thinking: Option<bool>,
}
