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
#include <unordered_map>
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
      path += '[';
      path += std::to_string(frames[i].index);
      path += ']';
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

namespace json_util_internal {

// Builds the value from the parser's SAX events, in time linear in the text: nlohmann's
// callback parser rescans the parent container after every object (quadratic for an array of
// 10^6 `{}`), and ordered_json's key lookup is a linear search (quadratic for an object of
// 10^6 keys), so keys are found through a hash map per open object. Checks the depth and
// duplicate keys on the way, and keeps the open containers for error messages.
template <class Json>
class StrictSax {
 public:
  using string_t = typename Json::string_t;
  using object_t = typename Json::object_t;
  using array_t = typename Json::array_t;

  StrictSax(Json& root, const std::string& source, const StrictJsonOptions& options)
      : root_(root), source_(source), options_(options) {}

  bool null() { return Value(nullptr); }
  bool boolean(bool v) { return Value(v); }
  bool number_integer(typename Json::number_integer_t v) { return Value(v); }
  bool number_unsigned(typename Json::number_unsigned_t v) { return Value(v); }
  bool number_float(typename Json::number_float_t v, const string_t&) { return Value(v); }
  bool string(string_t& v) { return Value(std::move(v)); }
  bool binary(typename Json::binary_t& v) { return Value(std::move(v)); }
  bool start_object(std::size_t) { return Open(Json::value_t::object, false); }
  bool start_array(std::size_t) { return Open(Json::value_t::array, true); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }

  bool key(string_t& key) {
    frames_.back().key = key;
    object_t& obj = open_.back().value->template get_ref<object_t&>();
    if constexpr (requires { typename object_t::Container; }) {  // ordered_json: a vector
      auto [it, inserted] = open_.back().keys.try_emplace(key, obj.size());
      if (!inserted) {
        Duplicate();
        target_ = &(obj.begin() + static_cast<std::ptrdiff_t>(it->second))->second;
        return true;
      }
      static_cast<typename object_t::Container&>(obj).emplace_back(std::move(key), Json());
      target_ = &obj.back().second;
    } else {  // nlohmann::json: a std::map
      auto [it, inserted] = obj.try_emplace(std::move(key));
      if (!inserted) Duplicate();
      target_ = &it->second;
    }
    return true;
  }

  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& e) {
    throw e;
  }

  const std::vector<Frame>& frames() const { return frames_; }

 private:
  struct Open_ {
    Json* value;
    std::unordered_map<string_t, size_t> keys;  // ordered_json objects: key -> position
  };

  // Where the next value goes: the root, the open array's end, or the open object's key.
  Json* Slot() {
    if (open_.empty()) return &root_;
    if (frames_.back().is_array) {
      ++frames_.back().index;
      array_t& a = open_.back().value->template get_ref<array_t&>();
      a.emplace_back();
      return &a.back();
    }
    return target_;
  }
  template <class V>
  bool Value(V&& v) {
    *Slot() = Json(std::forward<V>(v));
    return true;
  }
  bool Open(typename Json::value_t type, bool is_array) {
    Json* slot = Slot();
    *slot = Json(type);
    frames_.push_back({is_array, {}, -1});
    if (static_cast<int>(frames_.size()) - 1 > options_.max_depth) {
      const std::string path = PathOf(frames_);
      throw JsonTooDeepError(source_ + ": invalid " + options_.what + ": " +
                                 (path.empty() ? "" : path + ": ") + "nested deeper than " +
                                 std::to_string(options_.max_depth) + " levels",
                             path);
    }
    open_.push_back({slot, {}});
    return true;
  }
  bool Close() {
    open_.pop_back();
    frames_.pop_back();
    return true;
  }
  // A key seen before in the open object: an error, or the last one wins (Python's json).
  void Duplicate() const {
    if (options_.reject_duplicate_keys)
      throw Error(source_ + ": duplicate " + (open_.size() == 1 ? options_.top_key : "key") +
                  " \"" + frames_.back().key + "\"");
  }

  Json& root_;
  const std::string& source_;
  const StrictJsonOptions& options_;
  std::vector<Open_> open_;
  std::vector<Frame> frames_;
  Json* target_ = nullptr;  // the value of the open object's current key
};

}  // namespace json_util_internal

// Parses `text`; every error throws `Error` starting with `source` (`JsonTooDeepError` for
// nesting, `JsonNumberOverflowError` for 1e999). `Json` is nlohmann::json or
// nlohmann::ordered_json. Time and memory are linear in the text.
template <class Json>
Json ParseJsonStrict(std::string_view text, const std::string& source,
                     const StrictJsonOptions& options = {}) {
  Json root;
  json_util_internal::StrictSax<Json> sax(root, source, options);
  try {
    Json::sax_parse(text.begin(), text.end(), &sax);
  } catch (const typename Json::exception& e) {
    // "[json.exception.out_of_range.406] number overflow parsing '1e999'": the library's tag
    // is of no use to the reader.
    std::string_view why = e.what();
    if (why.rfind("[json.exception.", 0) == 0 && why.find("] ") != std::string_view::npos)
      why.remove_prefix(why.find("] ") + 2);
    if (e.id == 406) {  // number overflow: name the value
      const std::string path = json_util_internal::ScalarPathOf(sax.frames());
      throw JsonNumberOverflowError(source + ": invalid " + options.what + ": " +
                                        (path.empty() ? "" : path + ": ") + std::string(why),
                                    path);
    }
    throw Error(source + ": invalid " + options.what + ": " + std::string(why));
  }
  return root;
}

}  // namespace dsinfer
