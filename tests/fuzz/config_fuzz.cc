// libFuzzer target: any text given to ParseJsonStrict + ModelConfig either parses and
// validates, or is rejected with `dsinfer::Error`. An accepted config must survive ToJson →
// FromJson unchanged and give a finite softmax scale.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "format/config.h"
#include "format/json_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    // The same strict parse as ModelConfig::FromFile (duplicate keys, depth limit).
    const nlohmann::json j = dsinfer::ParseJsonStrict<nlohmann::json>(text, "fuzz/config.json");
    const dsinfer::ModelConfig c = dsinfer::ModelConfig::FromJson(j, "fuzz/config.json");
    if (!(dsinfer::ModelConfig::FromJson(c.ToJson(), "round-trip") == c)) std::abort();
    if (!std::isfinite(c.softmax_scale())) std::abort();
    // `Set` with the input's own top-level values as text must not crash either.
    dsinfer::ModelConfig s = c;
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        try {
          s.Set(it.key(),
                it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
        } catch (const dsinfer::Error&) {
        }
      }
    }
  } catch (const dsinfer::Error&) {
  }
  return 0;
}
