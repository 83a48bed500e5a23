#include "server/usage.h"

#include <cmath>
#include <sstream>
#include <vector>

#include "base/error.h"

namespace dsinfer::server {

Prices ParsePrices(const std::string& text) {
  std::vector<double> v;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    size_t used = 0;
    double x = -1;
    try {
      x = std::stod(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != part.size() || !(x >= 0) || !std::isfinite(x))
      throw Error("--prices: '" + part + "' is not a non-negative number");
    v.push_back(x);
  }
  if (v.size() != 3)
    throw Error("--prices: expected hit,miss,output (3 numbers), got '" + text + "'");
  return Prices{v[0], v[1], v[2]};
}

nlohmann::ordered_json UsageJson(const Usage& u, const Prices& p) {
  const int64_t miss = u.prompt_tokens - u.cache_hit_tokens;
  const double hit_cost = u.cache_hit_tokens * p.cache_hit / 1e6;
  const double miss_cost = miss * p.cache_miss / 1e6;
  const double out_cost = u.completion_tokens * p.output / 1e6;
  nlohmann::ordered_json j;
  j["prompt_tokens"] = u.prompt_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  j["prompt_cache_hit_tokens"] = u.cache_hit_tokens;
  j["prompt_cache_miss_tokens"] = miss;
  j["prompt_tokens_details"] = {{"cached_tokens", u.cache_hit_tokens}};
  j["completion_tokens_details"] = {{"reasoning_tokens", u.reasoning_tokens}};
  j["cost"] = {{"input_cache_hit", hit_cost},
               {"input_cache_miss", miss_cost},
               {"output", out_cost},
               {"total", hit_cost + miss_cost + out_cost},
               {"currency", "USD"}};
  return j;
}

nlohmann::ordered_json PricesJson(const Prices& p) {
  nlohmann::ordered_json j;
  j["object"] = "dsinfer.prices";
  j["currency"] = "USD";
  j["per_tokens"] = 1000000;
  j["input_cache_hit"] = p.cache_hit;
  j["input_cache_miss"] = p.cache_miss;
  j["output"] = p.output;
  return j;
}

}  // namespace dsinfer::server
