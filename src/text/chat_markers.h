// The literal strings of DeepSeek-V3.2's chat format (docs/model.md §9.1), shared by the prompt
// encoder and the completion parser. `｜` is U+FF5C and `▁` is U+2581.
#pragma once

#include <string_view>

namespace dsinfer::text::chat {

inline constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kUser = "<｜User｜>";
inline constexpr std::string_view kAssistant = "<｜Assistant｜>";
inline constexpr std::string_view kThinkStart = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";

// DSML tool-call markup. A tool-call block starts with `kCallsStart` ("\n\n" included).
inline constexpr std::string_view kCallsStart = "\n\n<｜DSML｜function_calls";
inline constexpr std::string_view kCallsOpen = "<｜DSML｜function_calls>";
inline constexpr std::string_view kCallsEnd = "</｜DSML｜function_calls>";
inline constexpr std::string_view kInvokeOpen = "<｜DSML｜invoke";
inline constexpr std::string_view kInvokeClose = "</｜DSML｜invoke";
inline constexpr std::string_view kParamOpen = "<｜DSML｜parameter";
inline constexpr std::string_view kParamClose = "/｜DSML｜parameter";  // preceded by '<'

}  // namespace dsinfer::text::chat
