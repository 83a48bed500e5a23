#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"

namespace dsinfer {

int32_t Argmax(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<int32_t>(best);
}

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  if (!(options.temperature >= 0.0f))
    throw Error("temperature must be ≥ 0 (got " + std::to_string(options.temperature) + ")");
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f))
    throw Error("top-p must be in (0, 1] (got " + std::to_string(options.top_p) + ")");
}

int32_t Sampler::Sample(const float* logits, int64_t vocab) {
  if (options_.temperature == 0.0f) return Argmax(logits, vocab);
  const double m = logits[Argmax(logits, vocab)];
  std::vector<double> p(vocab);  // [vocab] unnormalised probabilities
  for (int64_t i = 0; i < vocab; ++i) p[i] = std::exp((logits[i] - m) / options_.temperature);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  // Nucleus: the shortest prefix of `order` whose mass reaches top_p (at least one token).
  double kept = 0;
  size_t n = 0;
  while (n < order.size() && (n == 0 || kept < options_.top_p * total)) kept += p[order[n++]];
  double u = std::uniform_real_distribution<double>(0.0, kept)(rng_);
  for (size_t i = 0; i < n; ++i) {
    u -= p[order[i]];
    if (u < 0) return order[i];
  }
  return order[n - 1];
}

TokenLogprobs ComputeLogprobs(const float* logits, int64_t vocab, int32_t chosen, int top_n) {
  DSINFER_CHECK(chosen >= 0 && chosen < vocab && top_n >= 0 && top_n <= vocab,
                "logprobs outside the vocabulary");
  const double m = logits[Argmax(logits, vocab)];
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - m);
  const double log_z = m + std::log(sum);
  auto lp = [&](int32_t i) { return static_cast<float>(logits[i] - log_z); };
  TokenLogprobs r;
  r.token = chosen;
  r.logprob = lp(chosen);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + top_n, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < top_n; ++i) r.top.emplace_back(order[i], lp(order[i]));
  return r;
}

}  // namespace dsinfer
