#include "text/completion_parser.h"

#include <initializer_list>

#include "base/error.h"
#include "text/chat_markers.h"
#include "text/py_json.h"

namespace dsinfer::text {
namespace {

using namespace chat;  // NOLINT: the marker constants
constexpr size_t kNone = std::string_view::npos;

struct Found {
  size_t pos = kNone;
  std::string_view marker;
};

// The earliest occurrence at or after `from` of any of `markers`. No two of the marker sets
// used here can overlap (each has '<' only at its start, or they differ in the first byte),
// so the earliest complete match in a prefix is also the earliest in the whole text.
Found FindFirst(std::string_view s, size_t from, std::initializer_list<std::string_view> markers) {
  Found best;
  for (std::string_view m : markers) {
    size_t p = s.find(m, from);
    if (p < best.pos) best = {p, m};
  }
  return best;
}

// Length of the longest suffix of `s` that is a proper prefix of one of `markers`: the text a
// stream must hold back because the next piece may complete a marker.
size_t HeldSuffix(std::string_view s, std::initializer_list<std::string_view> markers) {
  size_t keep = 0;
  for (std::string_view m : markers)
    for (size_t k = std::min(s.size(), m.size() - 1); k > keep; --k)
      if (s.substr(s.size() - k) == m.substr(0, k)) {
        keep = k;
        break;
      }
  return keep;
}

std::string DefaultId(size_t index) { return "call_" + std::to_string(index); }

// ---- the tool-call block -------------------------------------------------------------------

enum class Step { kOk, kNeedMore, kMalformed };

struct ToolScan {
  Step status = Step::kNeedMore;  // kOk: the block is closed at `closed_end`
  std::vector<ParsedToolCall> calls;
  std::vector<size_t> ends;  // offset just past each call's `</｜DSML｜invoke>`
  size_t closed_end = 0;     // offset just past `</｜DSML｜function_calls>`
};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// `seg` is the text between "<｜DSML｜invoke" and the next parameter or invoke-close marker:
// `\s*name="N">\n`, plus one more "\n" when the invoke has no parameters.
bool ParseInvokeName(std::string_view seg, std::string& name) {
  while (!seg.empty() && IsSpace(seg.front())) seg.remove_prefix(1);
  if (!seg.starts_with("name=\"")) return false;
  seg.remove_prefix(6);
  for (std::string_view tail : {std::string_view("\">\n\n"), std::string_view("\">\n")})
    if (seg.ends_with(tail)) {
      name = seg.substr(0, seg.size() - tail.size());
      return true;
    }
  return false;
}

// `seg` is the text between "<｜DSML｜parameter" and "/｜DSML｜parameter":
// ` name="K" string="true|false">V<`; K ends at the first `" string="...">`.
bool ParseParam(std::string_view seg, std::string& key, std::string& value, bool& is_str) {
  constexpr std::string_view kTrue = "\" string=\"true\">", kFalse = "\" string=\"false\">";
  if (!seg.starts_with(" name=\"") || !seg.ends_with("<")) return false;
  seg.remove_prefix(7);
  seg.remove_suffix(1);
  size_t t = seg.find(kTrue), f = seg.find(kFalse);
  if (t == kNone && f == kNone) return false;
  is_str = t < f;
  size_t at = is_str ? t : f;
  key = seg.substr(0, at);
  value = seg.substr(at + (is_str ? kTrue.size() : kFalse.size()));
  return is_str || nlohmann::json::accept(value);
}

// Whether `rest` (no marker found in it yet) may still become `sep` followed by a marker.
bool CanStillMatch(std::string_view rest, std::string_view sep,
                   std::initializer_list<std::string_view> markers) {
  if (rest.size() <= sep.size()) return sep.starts_with(rest);
  if (!rest.starts_with(sep)) return false;
  rest.remove_prefix(sep.size());
  for (std::string_view m : markers)
    if (m.starts_with(rest.substr(0, std::min(rest.size(), m.size())))) return true;
  return false;
}

// Reads `sep` then one of `markers` at `pos`; on success `pos` is past the marker.
Step ReadSeparator(std::string_view s, size_t& pos, std::string_view sep,
                   std::initializer_list<std::string_view> markers, std::string_view& which) {
  Found f = FindFirst(s, pos, markers);
  if (f.pos == kNone)
    return CanStillMatch(s.substr(pos), sep, markers) ? Step::kNeedMore : Step::kMalformed;
  if (s.substr(pos, f.pos - pos) != sep) return Step::kMalformed;
  pos = f.pos + f.marker.size();
  which = f.marker;
  return Step::kOk;
}

// One invoke from just after "<｜DSML｜invoke" to just past "</｜DSML｜invoke>".
Step ScanInvoke(std::string_view s, size_t& pos, ParsedToolCall& call) {
  Found f = FindFirst(s, pos, {kParamOpen, kInvokeClose});
  if (f.pos == kNone) return Step::kNeedMore;
  if (!ParseInvokeName(s.substr(pos, f.pos - pos), call.name)) return Step::kMalformed;
  pos = f.pos + f.marker.size();
  std::string_view which = f.marker;
  std::vector<std::string> keys;
  std::string args = "{";
  while (which == kParamOpen) {
    size_t close = s.find(kParamClose, pos);
    if (close == kNone) return Step::kNeedMore;
    std::string key, value;
    bool is_str = false;
    if (!ParseParam(s.substr(pos, close - pos), key, value, is_str)) return Step::kMalformed;
    for (const std::string& k : keys)
      if (k == key) return Step::kMalformed;  // duplicate parameter
    if (!keys.empty()) args += ", ";
    keys.push_back(key);
    AppendPyJsonString(key, args);
    args += ": ";
    if (is_str)
      AppendPyJsonString(value, args);
    else
      args += value;
    pos = close + kParamClose.size();
    Step st = ReadSeparator(s, pos, ">\n", {kParamOpen, kInvokeClose}, which);
    if (st != Step::kOk) return st;
  }
  if (pos >= s.size()) return Step::kNeedMore;
  if (s[pos] != '>') return Step::kMalformed;
  ++pos;
  call.arguments = args + "}";
  return Step::kOk;
}

// Scans a tool-call block. `s` starts at "\n\n<｜DSML｜function_calls" (`fresh`) or just past
// a complete invoke. Never reads past a point it cannot decide, so a stream may call it on
// every prefix.
ToolScan ScanTools(std::string_view s, bool fresh) {
  ToolScan r;
  size_t pos = 0;
  std::string_view sep = "\n";
  if (fresh) {
    DSINFER_CHECK(s.starts_with(kCallsStart));
    pos = kCallsStart.size();
    sep = ">\n";
  }
  while (true) {
    std::string_view which;
    r.status = ReadSeparator(s, pos, sep, {kInvokeOpen, kCallsEnd}, which);
    if (r.status != Step::kOk) return r;
    if (which == kCallsEnd) {
      r.closed_end = pos;
      return r;
    }
    ParsedToolCall call;
    r.status = ScanInvoke(s, pos, call);
    if (r.status != Step::kOk) return r;
    r.calls.push_back(std::move(call));
    r.ends.push_back(pos);
    sep = "\n";
  }
}

}  // namespace

// ---- one-shot ------------------------------------------------------------------------------

namespace {

// Parses from a tool-call block at `start` to the end of `text` into `out`.
void ParseToolBlock(std::string_view text, size_t start, ParsedCompletion& out,
                    const ToolCallIdFn& make_id) {
  ToolScan scan = ScanTools(text.substr(start), /*fresh=*/true);
  for (ParsedToolCall& call : scan.calls) {
    call.id = make_id ? make_id(out.tool_calls.size()) : DefaultId(out.tool_calls.size());
    out.tool_calls.push_back(std::move(call));
  }
  size_t fail_at = start + (scan.ends.empty() ? 0 : scan.ends.back());
  if (scan.status == Step::kOk) {
    std::string_view rest = text.substr(start + scan.closed_end);
    if (rest.empty()) return;
    if (rest.starts_with(kEos)) {
      if (rest.size() > kEos.size()) out.content += rest;  // text after EOS: kept verbatim
      return;
    }
  }
  out.content += text.substr(fail_at);
}

}  // namespace

ParsedCompletion ParseCompletion(std::string_view text, ThinkingMode mode,
                                 const ToolCallIdFn& make_id) {
  ParsedCompletion out;
  size_t pos = 0;
  if (mode == ThinkingMode::kThinking) {
    Found f = FindFirst(text, 0, {kThinkEnd, kEos});
    if (f.pos == kNone) {
      out.reasoning_content = text;  // cut short while thinking
      return out;
    }
    out.reasoning_content = text.substr(0, f.pos);
    if (f.marker == kEos) {
      if (f.pos + kEos.size() < text.size()) out.content = text.substr(f.pos);
      return out;
    }
    pos = f.pos + kThinkEnd.size();
  }
  Found f = FindFirst(text, pos, {kEos, kCallsStart});
  out.content = text.substr(pos, f.pos == kNone ? kNone : f.pos - pos);
  if (f.pos == kNone) return out;
  if (f.marker == kEos) {
    if (f.pos + kEos.size() < text.size()) out.content += text.substr(f.pos);
    return out;
  }
  ParseToolBlock(text, f.pos, out, make_id);
  return out;
}

nlohmann::ordered_json ToOpenAiMessage(const ParsedCompletion& parsed, ThinkingMode mode) {
  nlohmann::ordered_json msg = {{"role", "assistant"}};
  if (parsed.content.empty() && !parsed.tool_calls.empty())
    msg["content"] = nullptr;
  else
    msg["content"] = parsed.content;
  if (mode == ThinkingMode::kThinking) msg["reasoning_content"] = parsed.reasoning_content;
  if (!parsed.tool_calls.empty()) {
    nlohmann::ordered_json calls = nlohmann::ordered_json::array();
    for (const ParsedToolCall& c : parsed.tool_calls)
      calls.push_back({{"id", c.id},
                       {"type", "function"},
                       {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    msg["tool_calls"] = std::move(calls);
  }
  return msg;
}

// ---- streaming -----------------------------------------------------------------------------

namespace {

void Emit(std::vector<CompletionEvent>& events, CompletionEvent::Kind kind, std::string_view text) {
  if (text.empty()) return;
  events.push_back({.kind = kind, .text = std::string(text), .tool_call = {}});
}

}  // namespace

StreamingCompletionParser::StreamingCompletionParser(ThinkingMode mode, ToolCallIdFn make_id)
    : state_(mode == ThinkingMode::kThinking ? State::kThink : State::kContent),
      make_id_(std::move(make_id)) {}

std::vector<CompletionEvent> StreamingCompletionParser::Feed(std::string_view piece) {
  DSINFER_CHECK(!finished_, "Feed after Finish");
  pending_ += piece;
  std::vector<CompletionEvent> events;
  Process(/*final=*/false, events);
  return events;
}

std::vector<CompletionEvent> StreamingCompletionParser::Finish() {
  DSINFER_CHECK(!finished_, "Finish called twice");
  finished_ = true;
  std::vector<CompletionEvent> events;
  Process(/*final=*/true, events);
  return events;
}

void StreamingCompletionParser::Process(bool final, std::vector<CompletionEvent>& events) {
  while (true) {
    bool again = false;
    switch (state_) {
      case State::kThink:
      case State::kContent:
        again = StepText(final, events);
        break;
      case State::kTools:
        again = StepTools(final, events);
        break;
      case State::kToolsClosed:
        again = StepToolsClosed(final, events);
        break;
      case State::kAfterEos:
        if (pending_.empty()) return;
        pending_.insert(0, kEos);  // text after EOS: the EOS and the rest, verbatim
        FlushRaw(events);
        return;
      case State::kRaw:
        FlushRaw(events);
        return;
    }
    if (!again) return;
  }
}

// kThink / kContent: emit up to the first marker, or all but a possible marker prefix.
bool StreamingCompletionParser::StepText(bool final, std::vector<CompletionEvent>& events) {
  bool think = state_ == State::kThink;
  auto kind = think ? CompletionEvent::Kind::kReasoning : CompletionEvent::Kind::kContent;
  std::initializer_list<std::string_view> markers = {think ? kThinkEnd : kCallsStart, kEos};
  Found f = FindFirst(pending_, 0, markers);
  if (f.pos == kNone) {
    size_t keep = final ? 0 : HeldSuffix(pending_, markers);
    Emit(events, kind, std::string_view(pending_).substr(0, pending_.size() - keep));
    pending_.erase(0, pending_.size() - keep);
    return false;
  }
  Emit(events, kind, std::string_view(pending_).substr(0, f.pos));
  if (f.marker == kCallsStart) {
    pending_.erase(0, f.pos);  // the block is kept: it is the failure point if it is broken
    fresh_section_ = true;
    state_ = State::kTools;
  } else {
    pending_.erase(0, f.pos + f.marker.size());
    state_ = f.marker == kEos ? State::kAfterEos : State::kContent;
  }
  return true;
}

bool StreamingCompletionParser::StepTools(bool final, std::vector<CompletionEvent>& events) {
  ToolScan scan = ScanTools(pending_, fresh_section_);
  for (ParsedToolCall& call : scan.calls) {
    call.id = make_id_ ? make_id_(n_calls_) : DefaultId(n_calls_);
    ++n_calls_;
    events.push_back(
        {.kind = CompletionEvent::Kind::kToolCall, .text = {}, .tool_call = std::move(call)});
  }
  size_t resume = scan.ends.empty() ? 0 : scan.ends.back();
  pending_.erase(0, resume);
  if (resume > 0) fresh_section_ = false;
  if (scan.status == Step::kOk) {
    closed_end_ = scan.closed_end - resume;
    state_ = State::kToolsClosed;
    return true;
  }
  if (scan.status == Step::kMalformed || final) FlushRaw(events);
  return false;
}

// After `</｜DSML｜function_calls>` only an EOS (or the end) may follow.
bool StreamingCompletionParser::StepToolsClosed(bool final, std::vector<CompletionEvent>& events) {
  std::string_view tail = std::string_view(pending_).substr(closed_end_);
  if (tail.starts_with(kEos)) {
    pending_.erase(0, closed_end_ + kEos.size());
    state_ = State::kAfterEos;
    return true;
  }
  if (!kEos.starts_with(tail)) {
    FlushRaw(events);
  } else if (final) {
    if (tail.empty()) {
      pending_.clear();
      state_ = State::kRaw;
    } else {
      FlushRaw(events);
    }
  }
  return false;
}

void StreamingCompletionParser::FlushRaw(std::vector<CompletionEvent>& events) {
  Emit(events, CompletionEvent::Kind::kContent, pending_);
  pending_.clear();
  state_ = State::kRaw;
}

}  // namespace dsinfer::text
