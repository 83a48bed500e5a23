// Strict JSON parsing for the files a checkpoint is made of (safetensors headers,
// config.json, model.safetensors.index.json) and for untrusted JSON text (API request bodies,
// tool-call arguments).
//
// nlohmann silently keeps one of two duplicate keys; for a checkpoint that would make a tensor
// or a config value ambiguous, so duplicates at any level are errors (request bodies turn this
// off: Python's json keeps the last one, and so do we). Nesting deeper than a document needs is
// refused while parsing (nlohmann's parser itself is iterative), so the recursive operations
// that follow (copy, compare, dump) cannot exhaust the stack on hostile input. Thread-safe: a
// pure function.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace dsinfer {

// The default nesting limit: deeper than any config file or real JSON schema needs (OpenAI's
// structured outputs allow 10 levels of schema nesting, ~20 containers), shallow enough that
// every recursive walk over the value uses a few KB of stack.
inline constexpr int kMaxJsonDepth = 64;

struct StrictJsonOptions {
  const char* what = "JSON";          // in messages: "<source>: invalid <what>: ..."
  const char* top_key = "key";        // in messages for top-level keys: "duplicate <top_key>"
  int max_depth = kMaxJsonDepth;      // deepest container, the top-level value being depth 0
  bool reject_duplicate_keys = true;  // false: the last of duplicate keys wins
};

// Nesting beyond `max_depth`. `path()` names the container that is too deep by its first few
// parts, as a request parameter is named: "tools[0].function.parameters.properties..." ("" for
// the top-level value itself).
class JsonTooDeepError : public Error {
 public:
  JsonTooDeepError(const std::string& message, std::string path)
      : Error(message), path_(std::move(path)) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A number outside the double range (1e999). `path()` names the value, as a request parameter
// is named: "temperature", "stop[1]", "a.b[0].c" ("" for a top-level number).
class JsonNumberOverflowError : public Error {
 public:
  JsonNumberOverflowError(const std::string& message, std::string path)
      : Error(message), path_(std::move(path)) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

namespace json_util_internal {

// One open container while parsing: its key in the parent object, or its index in the parent
// array, and for arrays the index of the element being parsed.
struct Frame {
  bool is_array = false;
  std::string key;       // the key being parsed (objects)
  long long index = -1;  // the element being parsed (arrays)
};

// "a[3].b.c..." from the open containers: at most `max_parts` parts.
inline std::string PathOf(const std::vector<Frame>& frames, size_t max_parts = 6) {
  std::string path;
  size_t parts = 0;
  for (size_t i = 0; i + 1 < frames.size(); ++i) {  // the last frame is the too-deep one
    if (parts++ == max_parts) return path + "...";
    if (frames[i].is_array) {
      path += "[" + std::to_string(frames[i].index) + "]";
    } else {
      if (!path.empty()) path += '.';
      path += frames[i].key;
    }
  }
  return path;
}

// The path of the scalar value being parsed inside the open containers `frames` (an array's
// next element, an object's current key).
inline std::string ScalarPathOf(std::vector<Frame> frames, size_t max_parts = 6) {
  if (frames.empty()) return "";
  if (frames.back().is_array) ++frames.back().index;
  frames.push_back({});  // PathOf leaves out the last frame
  return PathOf(frames, max_parts);
}

}  // namespace json_util_internal

// Parses `text`; every error throws `Error` starting with `source` (`JsonTooDeepError` for
// nesting). `Json` is nlohmann::json or nlohmann::ordered_json.
template <class Json>
Json ParseJsonStrict(std::string_view text, const std::string& source,
                     const StrictJsonOptions& options = {}) {
  using Event = typename Json::parse_event_t;
  using json_util_internal::Frame;
  std::vector<std::set<std::string>> open_objects;  // the keys seen in each open object
  std::vector<Frame> frames;                        // the open containers, outermost first
  auto callback = [&](int depth, Event event, Json& parsed) {
    const bool starts = event == Event::object_start || event == Event::array_start;
    if ((starts || event == Event::value) && !frames.empty() && frames.back().is_array)
      ++frames.back().index;
    if (starts) {
      frames.push_back({event == Event::array_start, {}, -1});
      if (depth > options.max_depth) {
        const std::string path = json_util_internal::PathOf(frames);
        throw JsonTooDeepError(source + ": invalid " + options.what + ": " +
                                   (path.empty() ? "" : path + ": ") + "nested deeper than " +
                                   std::to_string(options.max_depth) + " levels",
                               path);
      }
      if (event == Event::object_start && options.reject_duplicate_keys)
        open_objects.emplace_back();
    } else if (event == Event::object_end || event == Event::array_end) {
      frames.pop_back();
      if (event == Event::object_end && options.reject_duplicate_keys) open_objects.pop_back();
    } else if (event == Event::key) {
      const auto& key = parsed.template get_ref<const std::string&>();
      frames.back().key = key;
      if (options.reject_duplicate_keys && !open_objects.back().insert(key).second) {
        throw Error(source + ": duplicate " + (depth == 1 ? options.top_key : "key") + " \"" + key +
                    "\"");
      }
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback);
  } catch (const typename Json::exception& e) {
    // "[json.exception.out_of_range.406] number overflow parsing '1e999'": the library's tag
    // is of no use to the reader.
    std::string_view why = e.what();
    if (why.rfind("[json.exception.", 0) == 0 && why.find("] ") != std::string_view::npos)
      why.remove_prefix(why.find("] ") + 2);
    if (e.id == 406) {  // number overflow: name the value
      const std::string path = json_util_internal::ScalarPathOf(frames);
      throw JsonNumberOverflowError(source + ": invalid " + options.what + ": " +
                                        (path.empty() ? "" : path + ": ") + std::string(why),
                                    path);
    }
    throw Error(source + ": invalid " + options.what + ": " + std::string(why));
  }
}

}  // namespace dsinfer
