// libFuzzer target: any JSON text given to ModelConfig either parses and validates, or is
// rejected with `dsinfer::Error`. An accepted config must survive ToJson → FromJson unchanged
// and give a finite softmax scale.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "format/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const dsinfer::ModelConfig c = dsinfer::ModelConfig::FromJson(j, "fuzz/config.json");
    if (!(dsinfer::ModelConfig::FromJson(c.ToJson(), "round-trip") == c)) std::abort();
    if (!std::isfinite(c.softmax_scale())) std::abort();
    // `Set` with the input's own top-level values as text must not crash either.
    dsinfer::ModelConfig s = c;
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        try {
          s.Set(it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
        } catch (const dsinfer::Error&) {
        }
      }
    }
  } catch (const dsinfer::Error&) {
  }
  return 0;
}
