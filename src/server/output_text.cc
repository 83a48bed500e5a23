#include "server/output_text.h"

#include <algorithm>

namespace dsinfer::server {

using Json = nlohmann::ordered_json;

OutputText::OutputText(const text::Tokenizer& tokenizer, std::vector<std::string> stops,
                       int32_t drop_id)
    : detok_(tokenizer), stops_(std::move(stops)), drop_id_(drop_id) {
  for (const auto& s : stops_) hold_ = std::max(hold_, s.size() - 1);
}

std::string OutputText::Add(int32_t id) {
  if (stopped_) return {};
  if (id == drop_id_) return {};
  held_ += detok_.Add(id);
  return Release(false);
}

std::string OutputText::Finish() {
  if (stopped_) return {};
  held_ += detok_.Flush();
  return Release(true);
}

// Cuts at the earliest stop match, else releases all but the bytes that could still start
// one (never splitting a UTF-8 sequence).
std::string OutputText::Release(bool final) {
  size_t match = std::string::npos;
  for (const auto& s : stops_) match = std::min(match, held_.find(s));
  if (match != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, match);
    held_.clear();
    return out;
  }
  size_t cut = held_.size();
  if (!final) cut = held_.size() > hold_ ? held_.size() - hold_ : 0;
  while (cut > 0 && cut < held_.size() && (static_cast<unsigned char>(held_[cut]) & 0xC0) == 0x80)
    --cut;
  std::string out = held_.substr(0, cut);
  held_.erase(0, cut);
  return out;
}

ChatOutput::ChatOutput(const text::Tokenizer& tokenizer, std::vector<std::string> stops,
                       text::ThinkingMode mode, std::string id_prefix)
    : text_(tokenizer, std::move(stops), -1),
      mode_(mode),
      parser_(mode, [id_prefix](size_t i) { return id_prefix + std::to_string(i); }),
      think_end_(tokenizer.TokenToId("</think>")),
      in_reasoning_(mode == text::ThinkingMode::kThinking) {}

std::vector<Json> ChatOutput::Add(int32_t id) {
  if (in_reasoning_ && think_end_ && id == *think_end_) in_reasoning_ = false;
  if (in_reasoning_) ++reasoning_tokens_;
  const std::string piece = text_.Add(id);
  return piece.empty() ? std::vector<Json>{} : Deltas(parser_.Feed(piece));
}

std::vector<Json> ChatOutput::Finish() {
  const std::string piece = text_.Finish();
  std::vector<text::CompletionEvent> events;
  if (!piece.empty()) events = parser_.Feed(piece);
  for (auto& e : parser_.Finish()) events.push_back(std::move(e));
  return Deltas(std::move(events));
}

std::vector<Json> ChatOutput::Deltas(std::vector<text::CompletionEvent> events) {
  std::vector<Json> out;
  for (auto& e : events) {
    using Kind = text::CompletionEvent::Kind;
    if (e.kind == Kind::kReasoning) {
      parsed_.reasoning_content += e.text;
      out.push_back(Json{{"reasoning_content", e.text}});
    } else if (e.kind == Kind::kContent) {
      parsed_.content += e.text;
      out.push_back(Json{{"content", e.text}});
    } else {
      const size_t index = parsed_.tool_calls.size();
      parsed_.tool_calls.push_back(e.tool_call);
      Json call = {
          {"index", index},
          {"id", e.tool_call.id},
          {"type", "function"},
          {"function", {{"name", e.tool_call.name}, {"arguments", e.tool_call.arguments}}}};
      out.push_back(Json{{"tool_calls", Json::array({call})}});
    }
  }
  return out;
}

Json ChatOutput::Message() const { return text::ToOpenAiMessage(parsed_, mode_); }

}  // namespace dsinfer::server
