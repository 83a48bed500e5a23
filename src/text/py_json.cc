#include "text/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "base/error.h"
#include "format/json_util.h"

namespace dsinfer::text {
namespace {

using ojson = nlohmann::ordered_json;

// A value that is neither an object nor an array.
void AppendScalar(const ojson& v, std::string& out) {
  switch (v.type()) {
    case ojson::value_t::null:
      out += "null";
      break;
    case ojson::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      break;
    case ojson::value_t::number_integer:
      out += std::to_string(v.get<int64_t>());
      break;
    case ojson::value_t::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      break;
    case ojson::value_t::number_float:
      out += PyFloatRepr(v.get<double>());
      break;
    case ojson::value_t::string:
      AppendPyJsonString(v.get_ref<const std::string&>(), out);
      break;
    default:
      throw Error("JSON value of type " + std::string(v.type_name()) +
                  " cannot be written as Python JSON");
  }
}

// Integer literals that do not fit 64 bits would silently become doubles in nlohmann.
void CheckIntegerLiterals(std::string_view text, const std::string& what) {
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '"') {  // skip a string literal, escapes included
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
      ++i;
      continue;
    }
    if (c != '-' && (c < '0' || c > '9')) {
      ++i;
      continue;
    }
    size_t start = i;
    bool is_int = true;
    while (i < text.size() &&
           (std::string_view("0123456789+-.eE").find(text[i]) != std::string_view::npos)) {
      if (text[i] == '.' || text[i] == 'e' || text[i] == 'E') is_int = false;
      ++i;
    }
    if (!is_int) continue;
    std::string_view lit = text.substr(start, i - start);
    bool fits;
    if (lit[0] == '-') {
      int64_t v;
      fits = std::from_chars(lit.data(), lit.data() + lit.size(), v).ec == std::errc();
    } else {
      uint64_t v;
      fits = std::from_chars(lit.data(), lit.data() + lit.size(), v).ec == std::errc();
    }
    if (!fits) throw Error(what + ": integer " + std::string(lit) + " is outside the 64-bit range");
  }
}

}  // namespace

void AppendPyJsonString(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;  // non-ASCII UTF-8 bytes and DEL pass through (ensure_ascii=False)
        }
    }
  }
  out += '"';
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  DSINFER_CHECK(res.ec == std::errc());
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // "-d.ddde+XX", shortest
  std::string out;
  if (sci[0] == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits += c;
  int exp10 = 0;
  std::string_view exp_text = sci.substr(e + 1);
  if (exp_text[0] == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp10);
  int decpt = exp10 + 1;  // position of the decimal point relative to the first digit
  int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) out.append(".").append(digits, 1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return out + ebuf;
  }
  if (decpt <= 0) {
    out.append("0.").append(static_cast<size_t>(-decpt), '0').append(digits);
  } else if (decpt < n) {
    out.append(digits, 0, static_cast<size_t>(decpt)).append(".").append(digits, decpt);
  } else {
    out.append(digits).append(static_cast<size_t>(decpt - n), '0').append(".0");
  }
  return out;
}

// Iterative, with an explicit stack of open containers: the depth of `value` costs heap,
// not call stack, so any value that could be built can be written.
std::string PyJsonDumps(const nlohmann::ordered_json& value) {
  struct Open {
    const ojson* container;
    ojson::const_iterator next;  // the element to write next
  };
  std::string out;
  std::vector<Open> open;
  auto begin = [&](const ojson& v) {  // writes a scalar, or the opening of a container
    if (v.is_object() || v.is_array()) {
      out += v.is_object() ? '{' : '[';
      open.push_back({&v, v.cbegin()});
    } else {
      AppendScalar(v, out);
    }
  };
  begin(value);
  while (!open.empty()) {
    Open& top = open.back();
    const bool is_object = top.container->is_object();
    if (top.next == top.container->cend()) {
      out += is_object ? '}' : ']';
      open.pop_back();
      continue;
    }
    if (top.next != top.container->cbegin()) out += ", ";
    const ojson::const_iterator it = top.next++;
    if (is_object) {
      AppendPyJsonString(it.key(), out);
      out += ": ";
    }
    begin(*it);  // may grow `open`: `top` is not used after this
  }
  return out;
}

nlohmann::ordered_json ParseJsonText(std::string_view text, const std::string& what) {
  ojson v = ParseJsonStrict<ojson>(text, what, {.reject_duplicate_keys = false});
  CheckIntegerLiterals(text, what);
  return v;
}

}  // namespace dsinfer::text
