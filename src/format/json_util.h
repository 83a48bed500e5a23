// Strict JSON parsing for the files a checkpoint is made of (safetensors headers,
// config.json, model.safetensors.index.json).
//
// nlohmann silently keeps one of two duplicate keys; for a checkpoint that would make a tensor
// or a config value ambiguous, so duplicates at any level are errors. Nesting deeper than a
// file needs is refused while parsing, so later recursive operations (copy, dump) cannot
// exhaust the stack on hostile input. Thread-safe: a pure function.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace dsinfer {

struct StrictJsonOptions {
  const char* what = "JSON";    // in messages: "<source>: invalid <what>: ..."
  const char* top_key = "key";  // in messages for top-level keys: "duplicate <top_key>"
  int max_depth = 64;           // deepest container, the top-level value being depth 0
};

// Parses `text`; every error throws `Error` starting with `source`. `Json` is nlohmann::json
// or nlohmann::ordered_json.
template <class Json>
Json ParseJsonStrict(std::string_view text, const std::string& source,
                     const StrictJsonOptions& options = {}) {
  using Event = typename Json::parse_event_t;
  std::vector<std::set<std::string>> open_objects;  // the keys seen in each open object
  auto callback = [&](int depth, Event event, Json& parsed) {
    if (event == Event::object_start || event == Event::array_start) {
      if (depth > options.max_depth) {
        throw Error(source + ": invalid " + options.what + ": nested deeper than " +
                    std::to_string(options.max_depth));
      }
      if (event == Event::object_start) open_objects.emplace_back();
    } else if (event == Event::object_end) {
      open_objects.pop_back();
    } else if (event == Event::key) {
      const auto& key = parsed.template get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        throw Error(source + ": duplicate " + (depth == 1 ? options.top_key : "key") + " \"" + key +
                    "\"");
      }
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback);
  } catch (const typename Json::exception& e) {
    throw Error(source + ": invalid " + options.what + ": " + e.what());
  }
}

}  // namespace dsinfer
