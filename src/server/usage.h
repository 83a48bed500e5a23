// Token accounting and DeepSeek-style prices: cache-hit input, cache-miss input and output
// tokens are priced separately (USD per 1M tokens). `prompt_cache_hit_tokens` are the prompt
// tokens adopted from the prefix cache (whole 64-token pages); the field is always present.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace dsinfer::server {

struct Prices {  // USD per 1M tokens; defaults: DeepSeek V3.2 list prices
  double cache_hit = 0.028;
  double cache_miss = 0.28;
  double output = 0.42;
};

// "hit,miss,output" → Prices; throws Error naming the bad part.
Prices ParsePrices(const std::string& text);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t cache_hit_tokens = 0;  // part of prompt_tokens served from the prefix cache
  int64_t completion_tokens = 0;
  int64_t reasoning_tokens = 0;  // part of completion_tokens inside the thinking block
};

// OpenAI `usage` + DeepSeek's cache fields + `cost` {input_cache_hit, input_cache_miss,
// output, total, currency}.
nlohmann::ordered_json UsageJson(const Usage& usage, const Prices& prices);

// The price table as served at GET /v1/dsinfer/prices: {object: "dsinfer.prices", currency,
// per_tokens: 1000000, input_cache_hit, input_cache_miss, output} (the `cost` field names).
nlohmann::ordered_json PricesJson(const Prices& prices);

}  // namespace dsinfer::server
