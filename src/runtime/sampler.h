// Next-token sampling from a row of logits: greedy (temperature 0: argmax, lowest id on ties)
// or temperature + nucleus (top-p) sampling from a seeded generator, so a given seed replays the
// same tokens. One Sampler per sequence; not thread-safe.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace dsinfer {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // keep the smallest set of most likely tokens with mass ≥ top_p
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws Error for temperature < 0 or top_p outside (0, 1].
  explicit Sampler(const SamplerOptions& options);
  int32_t Sample(const float* logits, int64_t vocab);

 private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
};

// Index of the largest logit, lowest index on ties.
int32_t Argmax(const float* logits, int64_t vocab);

// OpenAI `logprobs`: log-softmax of the f32 logits at temperature 1 (whatever the sampling
// temperature), accumulated in double: logprob(i) = x_i − max − log Σ exp(x_j − max).
struct TokenLogprobs {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;  // most likely first, lowest id on ties
};
// The chosen token's logprob and the `top_n` (0..vocab) most likely tokens.
TokenLogprobs ComputeLogprobs(const float* logits, int64_t vocab, int32_t chosen, int top_n);

}  // namespace dsinfer
