// The main job on a trained model: chat and thinking answers, and a long-context retrieval
// with DSA and dense attention side by side with their cost per token (demo_job.cc).
#pragma once

#include <string>

namespace dsinfer::cli {

// The prompts file a trained model's folder carries (written by tools/train/train.sh): task
// lines of `dsinfer eval`'s format (docs/eval.md) with kind "chat", "thinking" or "retrieval".
inline constexpr const char* kDemoPromptsFile = "demo_prompts.jsonl";

// Whether `dir` holds a trained model with demo prompts.
bool HasDemoPrompts(const std::string& dir);

// Answers every prompt of `dir`/demo_prompts.jsonl greedily, retrieval ones with DSA and with
// dense attention, printing each answer and its measured cost per token.
void RunDemoJob(const std::string& dir);

}  // namespace dsinfer::cli
