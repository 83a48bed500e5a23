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
  if (options.top_k < 0)
    throw Error("top-k must be ≥ 0 (got " + std::to_string(options.top_k) + ")");
}

void Sampler::SortPrefix(int64_t want) {
  if (want <= sorted_) return;
  const int64_t vocab = static_cast<int64_t>(order_.size());
  const int64_t end = std::min(vocab, std::max({want, 2 * sorted_, int64_t{64}}));
  // (probability descending, id ascending) is a strict total order: the sorted prefix is
  // exactly that of a full (stable) sort.
  auto more_likely = [&](int32_t a, int32_t b) {
    return p_[a] > p_[b] || (p_[a] == p_[b] && a < b);
  };
  if (end < vocab)
    std::nth_element(order_.begin() + sorted_, order_.begin() + end, order_.end(), more_likely);
  std::sort(order_.begin() + sorted_, order_.begin() + end, more_likely);
  sorted_ = end;
}

void Sampler::Candidates(const float* logits, int64_t vocab, double& total, int64_t& n,
                         double& kept) {
  const double m = logits[Argmax(logits, vocab)];
  p_.resize(vocab);
  for (int64_t i = 0; i < vocab; ++i) p_[i] = std::exp((logits[i] - m) / options_.temperature);
  total = std::accumulate(p_.begin(), p_.end(), 0.0);
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  sorted_ = 0;
  const int64_t limit = options_.top_k > 0 ? std::min(options_.top_k, vocab) : vocab;
  if (limit == vocab && options_.top_p >= 1.0f) {  // the whole vocabulary: no selection
    n = vocab;
    kept = total;
    return;
  }
  // Nucleus: the shortest prefix whose mass reaches top_p (at least one token, at most k).
  kept = 0;
  n = 0;
  while (n < limit && (n == 0 || kept < options_.top_p * total)) {
    SortPrefix(n + 1);
    kept += p_[order_[n++]];
  }
}

int32_t Sampler::Sample(const float* logits, int64_t vocab) {
  if (options_.temperature == 0.0f) return Argmax(logits, vocab);
  double total = 0, kept = 0;
  int64_t n = 0;
  Candidates(logits, vocab, total, n, kept);
  double u = std::uniform_real_distribution<double>(0.0, kept)(rng_);
  for (int64_t i = 0; i < n; ++i) {
    SortPrefix(i + 1);
    u -= p_[order_[i]];
    if (u < 0) return order_[i];
  }
  SortPrefix(n);
  return order_[n - 1];
}

void Sampler::Distribution(const float* logits, int64_t vocab, std::vector<double>& probs) {
  probs.assign(vocab, 0.0);
  if (options_.temperature == 0.0f) {
    probs[Argmax(logits, vocab)] = 1.0;
    return;
  }
  double total = 0, kept = 0;
  int64_t n = 0;
  Candidates(logits, vocab, total, n, kept);
  if (n == vocab)
    for (int64_t i = 0; i < vocab; ++i) probs[i] = p_[i] / kept;
  else
    for (int64_t i = 0; i < n; ++i) probs[order_[i]] = p_[order_[i]] / kept;
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
