// The fuzz seeds at the parsers' limits (tests/fuzz/<target>_corpus/limit_*, written by
// tests/fuzz/make_limit_seeds.py) stand where their names say: each seed at a limit is
// accepted and each one past it is refused naming that limit, so the fuzzer's 30 s start from
// the limits instead of hoping to grow there. The truth is the parsers' documented limits
// (JSON nesting 64, safetensors headers 2, GGUF arrays 8 deep and 4 dims, config counts).
#include <gtest/gtest.h>

#include <cstddef>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "format/config.h"
#include "format/gguf.h"
#include "format/json_util.h"
#include "format/safetensors.h"

namespace dsinfer {
namespace {

std::string Seed(const std::string& target, const std::string& name) {
  const std::string path =
      std::string(DSINFER_SOURCE_DIR) + "/tests/fuzz/" + target + "_corpus/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path << " is missing: run tests/fuzz/make_limit_seeds.py";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// The message of the Error `f` throws ("(no error)" when it returns).
template <class F>
std::string ErrorOf(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

ModelConfig Config(const std::string& name) {
  const std::string text = Seed("config_fuzz", name);
  return ModelConfig::FromJson(ParseJsonStrict<nlohmann::json>(text, name), name);
}

TEST(FuzzSeeds, ConfigNestingAtAndPastTheLimit) {
  EXPECT_EQ(kMaxJsonDepth, 64);
  EXPECT_EQ(Config("limit_depth64.json").num_hidden_layers, 61);
  const std::string text = Seed("config_fuzz", "limit_depth65.json");
  EXPECT_THROW(ParseJsonStrict<nlohmann::json>(text, "c"), JsonTooDeepError);
  EXPECT_NE(ErrorOf([&] {
              ParseJsonStrict<nlohmann::json>(text, "c");
            }).find("extra_nested[0][0][0][0][0]...: nested deeper than 64 levels"),
            std::string::npos);
}

TEST(FuzzSeeds, ConfigCountsAtAndPastTheirBounds) {
  const ModelConfig c = Config("limit_bounds.json");
  EXPECT_EQ(c.num_hidden_layers, 1024);
  EXPECT_EQ(c.vocab_size, int64_t{1} << 24);
  EXPECT_EQ(c.n_routed_experts, 16384);
  EXPECT_NE(ErrorOf([] {
              Config("limit_bounds_over.json");
            }).find("num_hidden_layers (1025) is implausibly large (at most 1024)"),
            std::string::npos)
      << ErrorOf([] { Config("limit_bounds_over.json"); });
}

TEST(FuzzSeeds, ConfigWithThousandsOfKeys) {
  const std::string text = Seed("config_fuzz", "limit_many_keys.json");
  EXPECT_GE(ParseJsonStrict<nlohmann::json>(text, "c").size(), 2000u);
  EXPECT_EQ(Config("limit_many_keys.json").hidden_size, 7168);
  const std::string msg = ErrorOf([] { Config("limit_many_keys_duplicate.json"); });
  EXPECT_NE(msg.find("duplicate"), std::string::npos) << msg;
  EXPECT_NE(msg.find("architectures"), std::string::npos) << msg;
}

TEST(FuzzSeeds, SafetensorsHeaders) {
  const std::string many = Seed("safetensors_header_fuzz", "limit_many_tensors.safetensors");
  const SafetensorsHeader h = ParseSafetensorsHeader(Bytes(many), "s");
  EXPECT_EQ(h.tensors.size(), 500u);
  EXPECT_EQ(h.metadata.size(), 100u);
  EXPECT_LT(many.size(), 64u << 10);  // small on disk
  const std::string deep = Seed("safetensors_header_fuzz", "limit_depth3.safetensors");
  EXPECT_NE(ErrorOf([&] {
              ParseSafetensorsHeader(Bytes(deep), "s");
            }).find("nested deeper than 2 levels"),
            std::string::npos);
  const std::string big = Seed("safetensors_header_fuzz", "limit_shape_overflow.safetensors");
  const std::string msg = ErrorOf([&] { ParseSafetensorsHeader(Bytes(big), "s"); });
  EXPECT_NE(msg.find("shape [2147483648, 2147483648] of F64 needs"), std::string::npos) << msg;
}

std::string GgufError(const std::string& name) {
  const std::string f = Seed("gguf_header_fuzz", name);
  return ErrorOf([&] { ParseGguf(Bytes(f), "g"); });
}

TEST(FuzzSeeds, GgufArraysAndDims) {
  const std::string f8 = Seed("gguf_header_fuzz", "limit_arrays_depth8.gguf");
  const GgufHeader h = ParseGguf(Bytes(f8), "g");
  ASSERT_EQ(h.metadata.size(), 2u);
  int levels = 0;
  for (const GgufValue* v = &h.metadata[1].second; v != nullptr && v->type == GgufType::kArray;
       v = v->arrays.empty() ? nullptr : &v->arrays[0]) {
    ++levels;
    if (v->elem_type != GgufType::kArray) break;
  }
  EXPECT_EQ(levels, 8);
  EXPECT_NE(GgufError("limit_arrays_depth9.gguf").find("arrays nested deeper than 8"),
            std::string::npos);
  const std::string d4 = Seed("gguf_header_fuzz", "limit_dims4.gguf");
  EXPECT_EQ(ParseGguf(Bytes(d4), "g").tensors.at(0).dims.size(), 4u);
  EXPECT_NE(GgufError("limit_dims5.gguf").find("has 5 dims (expected 1 to 4)"), std::string::npos);
}

TEST(FuzzSeeds, GgufLargeHeader) {
  const std::string f = Seed("gguf_header_fuzz", "limit_large_header.gguf");
  EXPECT_LT(f.size(), 96u << 10);  // small on disk
  const GgufHeader h = ParseGguf(Bytes(f), "g");
  EXPECT_EQ(h.tensors.size(), 120u);
  bool tokens = false;
  for (const auto& [key, value] : h.metadata)
    if (key == "tokenizer.ggml.tokens") tokens = value.strings.size() == 2000;
  EXPECT_TRUE(tokens);
}

TEST(FuzzSeeds, GgufCountsAtAndPastTheirBounds) {
  // At the bound the count check passes and the parse fails further on; one more is refused.
  const std::string kv_at = GgufError("limit_kv_count_at_bound.gguf");
  EXPECT_EQ(kv_at.find("cannot fit"), std::string::npos) << kv_at;
  EXPECT_NE(kv_at.find("duplicate metadata key ''"), std::string::npos) << kv_at;
  EXPECT_NE(GgufError("limit_kv_count_over_bound.gguf").find("metadata count"), std::string::npos);
  EXPECT_NE(GgufError("limit_kv_count_over_bound.gguf").find("cannot fit"), std::string::npos);
  const std::string t_at = GgufError("limit_tensor_count_at_bound.gguf");
  EXPECT_EQ(t_at.find("cannot fit"), std::string::npos) << t_at;
  EXPECT_NE(t_at.find("has 0 dims"), std::string::npos) << t_at;
  EXPECT_NE(GgufError("limit_tensor_count_over_bound.gguf").find("tensor count"),
            std::string::npos);
}

}  // namespace
}  // namespace dsinfer
