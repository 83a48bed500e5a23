// Next-token sampling from a row of logits: greedy (temperature 0: argmax, lowest id on ties)
// or temperature + top-k + nucleus (top-p) sampling from a seeded generator, so a given seed
// replays the same tokens. The candidates are the most likely tokens in the order
// (probability descending, id ascending); the sampler finds them by partial selection
// (nth_element + sort of a growing prefix), never sorting the whole vocabulary unless the
// draw walks that far: the result is the token a full sort would give (tests/unit/runtime/
// sampler_test.cc compares them). One Sampler per sequence; not thread-safe.
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
  int64_t top_k = 0;  // > 0: keep at most the k most likely tokens (0: no limit)
};

class Sampler {
 public:
  // Throws Error for temperature < 0, top_p outside (0, 1] or top_k < 0.
  explicit Sampler(const SamplerOptions& options);
  int32_t Sample(const float* logits, int64_t vocab);

  // The distribution `Sample` draws from: probs [vocab] gets the candidates' probabilities
  // (renormalised over the candidates), every other token 0. Greedy: 1 on the argmax.
  void Distribution(const float* logits, int64_t vocab, std::vector<double>& probs);
  // A uniform draw in [0, 1) from this sampler's generator (speculative acceptance).
  double Uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  const SamplerOptions& options() const { return options_; }

 private:
  // Probabilities p_ [vocab] (unnormalised) and total; candidates order_[0, n) with mass kept.
  void Candidates(const float* logits, int64_t vocab, double& total, int64_t& n, double& kept);
  // Makes order_[0, want) the `want` most likely tokens, sorted (grows geometrically).
  void SortPrefix(int64_t want);

  SamplerOptions options_;
  std::mt19937_64 rng_;
  std::vector<double> p_;       // [vocab] exp((logit − max) / T)
  std::vector<int32_t> order_;  // [vocab] a permutation; order_[0, sorted_) sorted
  int64_t sorted_ = 0;
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
