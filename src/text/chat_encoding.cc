#include "text/chat_encoding.h"

#include <algorithm>
#include <optional>
#include <string_view>

#include "base/error.h"
#include "text/chat_markers.h"
#include "text/py_json.h"

namespace dsinfer::text {
namespace {

using ojson = nlohmann::ordered_json;
using namespace chat;  // NOLINT: the marker constants

// The fixed part of the TOOLS block (docs/model.md §9.2), up to the schema list.
constexpr std::string_view kToolsHead = R"TOOLS(## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<｜DSML｜function_calls>" block like the following as part of your reply to the user:
<｜DSML｜function_calls>
<｜DSML｜invoke name="$FUNCTION_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$FUNCTION_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<｜DSML｜function_calls>
...
</｜DSML｜function_calls>

<function_results>
...
</function_results>

<think>...thinking about results</think>

Here are the functions available in JSONSchema format:
<functions>
)TOOLS";

constexpr std::string_view kResponseFormatHead =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

// Python truthiness of a JSON value (`if tools:`, `content or ""`).
bool Truthy(const ojson* v) {
  if (v == nullptr) return false;
  switch (v->type()) {
    case ojson::value_t::null:
      return false;
    case ojson::value_t::boolean:
      return v->get<bool>();
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned:
    case ojson::value_t::number_float:
      return v->get<double>() != 0.0;
    case ojson::value_t::string:
    case ojson::value_t::array:
    case ojson::value_t::object:
      return !v->empty();
    default:
      return true;
  }
}

// The member `key` of object `obj`, or nullptr when absent or null.
const ojson* Member(const ojson& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

const std::string& RequireString(const ojson* v, const std::string& field) {
  if (v == nullptr) throw Error(field + ": missing");
  if (!v->is_string()) throw Error(field + ": must be a string, got " + v->type_name());
  return v->get_ref<const std::string&>();
}

// `content`: a string, or OpenAI text parts joined with "\n"; nullopt when absent or null.
std::optional<std::string> ContentOf(const ojson& msg, const std::string& field) {
  const ojson* c = Member(msg, "content");
  if (c == nullptr) return std::nullopt;
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array())
    throw Error(field + ": must be a string or an array of text parts, got " + c->type_name());
  std::string text;
  for (size_t i = 0; i < c->size(); ++i) {
    const ojson& part = (*c)[i];
    std::string pf = field + "[" + std::to_string(i) + "]";
    if (!part.is_object()) throw Error(pf + ": must be an object");
    const ojson* type = Member(part, "type");
    if (type != nullptr && *type != "text")
      throw Error(pf + ".type: only \"text\" parts are supported");
    if (i > 0) text += '\n';
    text += RequireString(Member(part, "text"), pf + ".text");
  }
  return text;
}

std::string RenderTools(const ojson& tools, const std::string& field) {
  if (!tools.is_array()) throw Error(field + ": must be an array of tools");
  std::string out(kToolsHead);
  for (size_t j = 0; j < tools.size(); ++j) {
    std::string tf = field + "[" + std::to_string(j) + "]";
    if (!tools[j].is_object()) throw Error(tf + ": must be an object");
    const ojson* fn = Member(tools[j], "function");
    if (fn == nullptr) throw Error(tf + ".function: missing");
    if (j > 0) out += '\n';
    out += PyJsonDumps(*fn);
  }
  out += "\n</functions>\n";
  return out;
}

std::string RenderResponseFormat(const ojson& format) {
  return std::string(kResponseFormatHead) + PyJsonDumps(format);
}

class Encoder {
 public:
  Encoder(const ojson& messages, const EncodeOptions& options) : msgs_(messages), opt_(options) {}

  std::string Run();
  // Where Run() wrote the format's control tokens, in order.
  std::vector<TextSpan>& control_tokens() { return control_; }

 private:
  // Appends a control token of the format (BOS, EOS, User, Assistant, think tags).
  void Control(std::string_view token) {
    control_.push_back({out_.size(), token.size()});
    out_ += token;
  }
  bool Thinking() const { return opt_.thinking_mode == ThinkingMode::kThinking; }
  static std::string Field(size_t i) { return "messages[" + std::to_string(i) + "]"; }
  std::string RoleOf(size_t i) const;
  // Appends `"\n\n" + TOOLS` and `"\n\n" + response format` of a system or developer message.
  void AppendAttachments(const ojson& msg, size_t i, bool with_request_level);
  void System(size_t i);
  void User(size_t i, bool developer);
  void Assistant(size_t i);
  void Tool(size_t i);
  std::string ToolCalls(const ojson& calls, const std::string& field) const;
  std::string Invoke(const ojson& call, const std::string& field) const;
  size_t ToolResultsAfter(size_t i) const;

  const ojson& msgs_;
  const EncodeOptions& opt_;
  int64_t last_user_ = -1;  // index of the last user or developer message, -1 if none
  std::string out_;
  std::vector<TextSpan> control_;
};

std::string Encoder::RoleOf(size_t i) const {
  const ojson& m = msgs_[i];
  if (!m.is_object()) throw Error(Field(i) + ": must be an object");
  return RequireString(Member(m, "role"), Field(i) + ".role");
}

std::string Encoder::Run() {
  if (!msgs_.is_array()) throw Error("messages: must be an array");
  if (msgs_.empty()) throw Error("messages: must not be empty");
  for (size_t i = 0; i < msgs_.size(); ++i) {
    std::string role = RoleOf(i);
    if (role == "user" || role == "developer") last_user_ = static_cast<int64_t>(i);
  }
  if (opt_.add_bos) Control(kBos);
  bool request_level = Truthy(opt_.tools) || Truthy(opt_.response_format);
  if (request_level && RoleOf(0) != "system") AppendAttachments(ojson::object(), 0, true);
  for (size_t i = 0; i < msgs_.size(); ++i) {
    std::string role = RoleOf(i);
    if (role == "system") {
      System(i);
    } else if (role == "user" || role == "developer") {
      User(i, role == "developer");
    } else if (role == "assistant") {
      Assistant(i);
    } else if (role == "tool") {
      Tool(i);
    } else {
      throw Error(Field(i) + ".role: unknown role \"" + role +
                  "\" (expected system, user, developer, assistant or tool)");
    }
  }
  std::sort(control_.begin(), control_.end(),
            [](const TextSpan& a, const TextSpan& b) { return a.offset < b.offset; });
  return std::move(out_);
}

void Encoder::AppendAttachments(const ojson& msg, size_t i, bool with_request_level) {
  const ojson* tools = Member(msg, "tools");
  const ojson* format = Member(msg, "response_format");
  std::string tools_field = Field(i) + ".tools";
  if (with_request_level && Truthy(opt_.tools)) {
    if (Truthy(tools)) throw Error("tools: given both in the request and in " + tools_field);
    tools = opt_.tools;
    tools_field = "tools";
  }
  if (with_request_level && Truthy(opt_.response_format)) {
    if (Truthy(format))
      throw Error("response_format: given both in the request and in " + Field(i) +
                  ".response_format");
    format = opt_.response_format;
  }
  if (Truthy(tools)) {
    std::string rendered = RenderTools(*tools, tools_field);  // starts with kToolsHead
    out_ += "\n\n";
    const size_t head = out_.size();
    out_ += rendered;
    // The head's example thinking block is the format's own text: its tags are control tokens.
    for (std::string_view tag : {kThinkStart, kThinkEnd}) {
      for (size_t p = kToolsHead.find(tag); p != std::string_view::npos;
           p = kToolsHead.find(tag, p + 1))
        control_.push_back({head + p, tag.size()});
    }
  }
  if (Truthy(format)) out_ += "\n\n" + RenderResponseFormat(*format);
}

void Encoder::System(size_t i) {
  out_ += ContentOf(msgs_[i], Field(i) + ".content").value_or("");
  AppendAttachments(msgs_[i], i, /*with_request_level=*/i == 0);
}

void Encoder::User(size_t i, bool developer) {
  std::string field = Field(i) + ".content";
  std::optional<std::string> content = ContentOf(msgs_[i], field);
  if (!content) throw Error(field + ": missing");
  Control(kUser);
  if (developer) {
    // The encoder asserts a non-empty developer content.
    if (content->empty()) throw Error(field + ": a developer message needs non-empty content");
    AppendAttachments(msgs_[i], i, /*with_request_level=*/false);
    out_ += "\n\n# The user's message is: ";
  }
  out_ += *content;
  Control(kAssistant);
  bool open = Thinking() && static_cast<int64_t>(i) == last_user_;
  Control(open ? kThinkStart : kThinkEnd);
}

void Encoder::Assistant(size_t i) {
  const ojson& m = msgs_[i];
  std::string field = Field(i);
  std::string content = ContentOf(m, field + ".content").value_or("");
  const char* reasoning_key = m.contains("reasoning_content") ? "reasoning_content" : "reasoning";
  const ojson* reasoning = Member(m, reasoning_key);
  if (reasoning != nullptr && !reasoning->is_string())
    throw Error(field + "." + reasoning_key + ": must be a string");
  const ojson* calls = Member(m, "tool_calls");
  std::string calls_text;
  if (calls != nullptr && (!calls->is_array() || !calls->empty())) {
    calls_text = ToolCalls(*calls, field + ".tool_calls");
    size_t results = ToolResultsAfter(i);
    if (results > 0 && results < calls->size())
      throw Error(field + ".tool_calls: " + std::to_string(calls->size()) +
                  " tool calls but only " + std::to_string(results) + " tool results follow");
  }
  if (Thinking() && static_cast<int64_t>(i) > last_user_) {
    // DeepSeek's encoder asserts this: the turn after the last user message is the model's
    // own, so it must carry its reasoning or be a tool-call step.
    if (!Truthy(reasoning) && calls_text.empty())
      throw Error(field +
                  ": in thinking mode an assistant message after the last user message "
                  "needs reasoning_content or tool_calls");
    if (reasoning != nullptr) out_ += reasoning->get_ref<const std::string&>();
    Control(kThinkEnd);
  }
  out_ += content;
  out_ += calls_text;
  Control(kEos);
}

std::string Encoder::ToolCalls(const ojson& calls, const std::string& field) const {
  if (!calls.is_array()) throw Error(field + ": must be an array");
  std::string out = "\n\n" + std::string(kCallsOpen) + "\n";
  for (size_t j = 0; j < calls.size(); ++j) {
    if (j > 0) out += '\n';
    out += Invoke(calls[j], field + "[" + std::to_string(j) + "]");
  }
  out += "\n" + std::string(kCallsEnd);
  return out;
}

// One `<｜DSML｜invoke>`: string arguments raw, all others as Python JSON.
std::string Encoder::Invoke(const ojson& call, const std::string& field) const {
  if (!call.is_object()) throw Error(field + ": must be an object");
  const ojson* fn = Member(call, "function");
  if (fn == nullptr || !fn->is_object()) throw Error(field + ".function: missing or not an object");
  const std::string& name = RequireString(Member(*fn, "name"), field + ".function.name");
  const ojson* args = Member(*fn, "arguments");
  std::string args_field = field + ".function.arguments";
  if (args == nullptr) throw Error(args_field + ": missing");
  ojson parsed =
      args->is_string() ? ParseJsonText(args->get_ref<const std::string&>(), args_field) : *args;
  if (!parsed.is_object()) throw Error(args_field + ": must be a JSON object");
  std::string out = std::string(kInvokeOpen) + " name=\"" + name + "\">\n";
  bool first = true;
  for (auto it = parsed.begin(); it != parsed.end(); ++it) {
    if (!first) out += '\n';
    first = false;
    bool is_str = it.value().is_string();
    out += std::string(kParamOpen) + " name=\"" + it.key() + "\" string=\"" +
           (is_str ? "true" : "false") + "\">";
    out += is_str ? it.value().get<std::string>() : PyJsonDumps(it.value());
    out += "<" + std::string(kParamClose) + ">";
  }
  out += "\n" + std::string(kInvokeClose) + ">";
  return out;
}

size_t Encoder::ToolResultsAfter(size_t i) const {
  size_t k = 0;
  while (i + 1 + k < msgs_.size() && RoleOf(i + 1 + k) == "tool") ++k;
  return k;
}

void Encoder::Tool(size_t i) {
  int64_t j = static_cast<int64_t>(i) - 1;
  while (j >= 0 && RoleOf(static_cast<size_t>(j)) == "tool") --j;
  const ojson* calls = nullptr;
  if (j >= 0 && RoleOf(static_cast<size_t>(j)) == "assistant")
    calls = Member(msgs_[static_cast<size_t>(j)], "tool_calls");
  if (calls == nullptr || !calls->is_array() || calls->empty())
    throw Error(Field(i) + ": tool message without a preceding assistant message with tool_calls");
  size_t order = i - static_cast<size_t>(j);  // 1-based position among the tool results
  if (order > calls->size())
    throw Error(Field(i) + ": more tool results than the " + std::to_string(calls->size()) +
                " tool_calls of " + Field(static_cast<size_t>(j)));
  std::string field = Field(i) + ".content";
  std::optional<std::string> content = ContentOf(msgs_[i], field);
  if (!content) throw Error(field + ": missing");
  if (order == 1) out_ += "\n\n<function_results>";
  out_ += "\n<result>" + *content + "</result>";
  if (order == calls->size()) {
    out_ += "\n</function_results>\n\n";
    Control(Thinking() && static_cast<int64_t>(i) >= last_user_ ? kThinkStart : kThinkEnd);
  }
}

}  // namespace

std::string EncodeMessages(const nlohmann::ordered_json& messages, const EncodeOptions& options) {
  return Encoder(messages, options).Run();
}

ThinkingMode ThinkingModeOf(const nlohmann::ordered_json& request) {
  std::optional<bool> from_kwargs, from_thinking;
  if (const ojson* kw = Member(request, "chat_template_kwargs")) {
    if (!kw->is_object()) throw Error("chat_template_kwargs: must be an object");
    if (const ojson* t = Member(*kw, "thinking")) {
      if (!t->is_boolean()) throw Error("chat_template_kwargs.thinking: must be a boolean");
      from_kwargs = t->get<bool>();
    }
  }
  if (const ojson* th = Member(request, "thinking")) {
    if (!th->is_object()) throw Error("thinking: must be an object like {\"type\": \"enabled\"}");
    const std::string& type = RequireString(Member(*th, "type"), "thinking.type");
    if (type != "enabled" && type != "disabled")
      throw Error("thinking.type: must be \"enabled\" or \"disabled\", got \"" + type + "\"");
    from_thinking = type == "enabled";
  }
  if (from_kwargs && from_thinking && *from_kwargs != *from_thinking)
    throw Error("thinking: contradicts chat_template_kwargs.thinking");
  bool on = from_kwargs.value_or(from_thinking.value_or(false));
  return on ? ThinkingMode::kThinking : ThinkingMode::kChat;
}

ChatPrompt EncodeChatRequest(const nlohmann::ordered_json& request) {
  if (!request.is_object()) throw Error("request: must be a JSON object");
  const ojson* messages = Member(request, "messages");
  if (messages == nullptr) throw Error("messages: missing");
  ChatPrompt prompt;
  prompt.thinking_mode = ThinkingModeOf(request);
  EncodeOptions options{.thinking_mode = prompt.thinking_mode};
  options.tools = Member(request, "tools");
  const ojson* format = Member(request, "response_format");
  if (format != nullptr && format->is_object() && format->contains("type") &&
      (*format)["type"] == "text")
    format = nullptr;  // OpenAI's default: free text, nothing to render
  options.response_format = format;
  Encoder encoder(*messages, options);
  prompt.text = encoder.Run();
  prompt.control_tokens = std::move(encoder.control_tokens());
  return prompt;
}

}  // namespace dsinfer::text
