// JSON text exactly as Python writes and reads it for DeepSeek's chat encoding.
//
// DeepSeek's `encoding_dsv32.py` serialises tool schemas, response formats and tool-call
// arguments with `json.dumps(v, ensure_ascii=False)`: separators ", " and ": ", key order as
// given, non-ASCII kept as UTF-8, floats as Python's `repr`. The prompt must match it byte for
// byte, so we write our own serialiser instead of nlohmann's `dump()`. Objects must be
// `nlohmann::ordered_json` so that key order survives parsing. Stateless; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace dsinfer::text {

// `json.dumps(value, ensure_ascii=False)`. Iterative: any depth is written without recursion.
std::string PyJsonDumps(const nlohmann::ordered_json& value);

// Appends the JSON string literal for UTF-8 `s` ("..." with Python's escapes) to `out`.
void AppendPyJsonString(std::string_view s, std::string& out);

// `repr(float(d))`: shortest round-trip digits, exponent form iff the decimal exponent is
// < -4 or >= 16, otherwise fixed with at least one fractional digit ("1.0").
std::string PyFloatRepr(double d);

// Parses JSON text keeping key order (the last of duplicate keys wins, as in Python). Bad JSON,
// nesting deeper than `kMaxJsonDepth` (format/json_util.h: `JsonTooDeepError`), or an integer
// literal outside the 64-bit range (Python keeps it exact; nlohmann would round it to a
// double) raises `dsinfer::Error` whose message starts with `what`.
nlohmann::ordered_json ParseJsonText(std::string_view text, const std::string& what);

}  // namespace dsinfer::text
