#include "format/checkpoint.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;

// A fresh checkpoint folder with a valid config.json, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "ckpt_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    WriteText("config.json", ModelConfig{}.ToJson().dump(2));
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteText(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  // A shard whose tensors hold bytes `seed + i`.
  void WriteShard(const std::string& name, const std::vector<TensorSpec>& specs, int seed = 0) {
    WriteSafetensors(dir_ + "/" + name, specs, [&](const TensorSpec&, std::span<std::byte> out) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(seed + i);
    });
  }
  void WriteIndex(const std::map<std::string, std::string>& weight_map) {
    nlohmann::json j = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    WriteText("model.safetensors.index.json", j.dump());
  }
  void ExpectOpenError(const std::vector<std::string>& parts) {
    try {
      Checkpoint::Open(dir_);
      ADD_FAILURE() << "expected Error containing " << parts[0];
    } catch (const Error& e) {
      for (const std::string& p : parts) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
            << "message \"" << e.what() << "\" lacks \"" << p << "\"";
      }
    }
  }

  std::string dir_;
};

TEST_F(CheckpointTest, OpensAnIndexedCheckpoint) {
  WriteShard("model-00001-of-00002.safetensors",
             {{"model.embed_tokens.weight", DType::kBF16, {4, 8}},
              {"model.norm.weight", DType::kBF16, {8}}},
             1);
  WriteShard("model-00002-of-00002.safetensors",
             {{"lm_head.weight", DType::kBF16, {4, 8}},
              {"model.layers.0.self_attn.q_a_proj.weight", DType::kF8E4M3, {2, 8}},
              {"model.layers.0.self_attn.q_a_proj.weight_scale_inv", DType::kF32, {1, 1}}},
             2);
  WriteIndex({{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
              {"model.norm.weight", "model-00001-of-00002.safetensors"},
              {"lm_head.weight", "model-00002-of-00002.safetensors"},
              {"model.layers.0.self_attn.q_a_proj.weight", "model-00002-of-00002.safetensors"}});
  // (the scale is in its shard but not in the index: tolerated, and listed once)
  WriteText("model-99999.safetensors", "not a shard: not in the index, never opened");

  const Checkpoint c = Checkpoint::Open(dir_);
  EXPECT_EQ(c.config(), ModelConfig{});
  EXPECT_EQ(c.shards().size(), 2u);
  EXPECT_EQ(
      c.Names(),
      (std::vector<std::string>{
          "lm_head.weight", "model.embed_tokens.weight", "model.layers.0.self_attn.q_a_proj.weight",
          "model.layers.0.self_attn.q_a_proj.weight_scale_inv", "model.norm.weight"}));
  EXPECT_TRUE(c.Has("model.norm.weight"));
  EXPECT_FALSE(c.Has("model.norm.bias"));
  TensorView norm = c.Get("model.norm.weight", DType::kBF16, {8});
  ASSERT_EQ(norm.nbytes(), 16u);
  EXPECT_EQ(norm.bytes()[0], std::byte{1});
  TensorView q = c.Get("model.layers.0.self_attn.q_a_proj.weight", DType::kF8E4M3, {2, 8});
  EXPECT_EQ(q.bytes()[15], std::byte{2 + 15});
  EXPECT_EQ(c.Get("model.layers.0.self_attn.q_a_proj.weight_scale_inv").as<float>().size(), 1u);
}

TEST_F(CheckpointTest, GetErrorsNameTensorExpectedAndActual) {
  WriteShard("model.safetensors", {{"model.norm.weight", DType::kBF16, {8}}});
  const Checkpoint c = Checkpoint::Open(dir_);
  try {
    c.Get("model.layers.3.mlp.gate.weight");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"model.layers.3.mlp.gate.weight\" not found"),
              std::string::npos)
        << e.what();
  }
  try {
    c.Get("model.norm.weight", DType::kBF16, {7168});
    ADD_FAILURE();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"model.norm.weight\" is BF16 [8], expected BF16 [7168]"),
              std::string::npos)
        << msg;
  }
  try {
    c.Get("model.norm.weight", DType::kF32, {8});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is BF16 [8], expected F32 [8]"), std::string::npos)
        << e.what();
  }
}

TEST_F(CheckpointTest, WithoutIndexEverySafetensorsFileIsUsed) {
  WriteShard("b.safetensors", {{"y", DType::kU8, {2}}});
  WriteShard("a.safetensors", {{"x", DType::kU8, {3}}});
  WriteText("notes.txt", "ignored");
  const Checkpoint c = Checkpoint::Open(dir_);
  ASSERT_EQ(c.shards().size(), 2u);
  EXPECT_EQ(c.shards()[0].path(), dir_ + "/a.safetensors");  // sorted
  EXPECT_EQ(c.Names(), (std::vector<std::string>{"x", "y"}));
}

TEST_F(CheckpointTest, MissingConfigOrShards) {
  fs::remove(dir_ + "/config.json");
  ExpectOpenError({dir_ + "/config.json", "cannot open"});
  WriteText("config.json", "{\"n_routed_experts\": 60}");
  ExpectOpenError({dir_ + "/config.json", "n_routed_experts (60)", "n_group (8)"});
  WriteText("config.json", ModelConfig{}.ToJson().dump());
  ExpectOpenError({dir_, "no model.safetensors.index.json and no *.safetensors"});
}

TEST_F(CheckpointTest, IndexProblems) {
  const std::string index = dir_ + "/model.safetensors.index.json";
  WriteShard("s1.safetensors", {{"a", DType::kU8, {1}}, {"b", DType::kU8, {1}}});
  WriteShard("s2.safetensors", {{"c", DType::kU8, {1}}});

  WriteText("model.safetensors.index.json", "{\"weight_map\": {\"a\": ");
  ExpectOpenError({index, "invalid JSON"});
  WriteText("model.safetensors.index.json", "{\"metadata\": {}}");
  ExpectOpenError({index, "weight_map"});
  WriteText("model.safetensors.index.json", "{\"weight_map\": {\"a\": 3}}");
  ExpectOpenError({index, "\"a\"", "not a file name"});
  WriteText("model.safetensors.index.json",
            R"({"weight_map": {"a": "s1.safetensors", "a": "s2.safetensors"}})");
  ExpectOpenError({index, "duplicate key \"a\""});
  WriteIndex({{"a", "../s1.safetensors"}});
  ExpectOpenError({index, "invalid shard"});
  WriteIndex({{"a", "s1.safetensors"}, {"c", "s3.safetensors"}});
  ExpectOpenError({index, "\"s3.safetensors\"", "\"c\"", "does not exist"});
  WriteIndex({{"a", "s1.safetensors"}, {"zz", "s1.safetensors"}});
  ExpectOpenError({index, "\"zz\"", "s1.safetensors", "does not contain it"});
  WriteIndex({{"a", "s1.safetensors"}, {"c", "s1.safetensors"}, {"b", "s2.safetensors"}});
  ExpectOpenError({index, "does not contain it"});
  // The same tensor in two shards is ambiguous.
  WriteShard("s2.safetensors", {{"c", DType::kU8, {1}}, {"a", DType::kU8, {1}}});
  WriteIndex({{"a", "s1.safetensors"}, {"c", "s2.safetensors"}});
  ExpectOpenError({"\"a\"", dir_ + "/s1.safetensors", dir_ + "/s2.safetensors"});
  // A shard that fails to parse is named.
  WriteText("s2.safetensors", "xx");
  ExpectOpenError({dir_ + "/s2.safetensors", "truncated"});
}

// The permissions /proc/self/maps gives the page at `addr` ("r--p" for a file mapping, "---p"
// for a released page), or "" if it is not mapped.
std::string PagePermissions(uintptr_t addr) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long long lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %7s", &lo, &hi, perms) == 3 && lo <= addr &&
        addr < hi)
      return perms;
  }
  return "";
}

TEST_F(CheckpointTest, ReleaseTakesOnlyWholePagesOfDroppedTensorsOutOfMemory) {
  // Sizes that straddle pages in every way: a kept tensor sharing its first and last pages with
  // dropped ones, two dropped tensors in a row, a dropped tensor smaller than a page.
  const std::vector<TensorSpec> specs = {{"keep.a", DType::kU8, {10000}},
                                         {"drop.b", DType::kU8, {3 * 4096 + 100}},
                                         {"drop.c", DType::kU8, {5000}},
                                         {"keep.d", DType::kU8, {7000}},
                                         {"drop.e", DType::kU8, {3000}},
                                         {"drop.f", DType::kU8, {20000}}};
  WriteShard("model.safetensors", specs, 7);
  Checkpoint c = Checkpoint::Open(dir_);
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<uintptr_t>(c.shards()[0].mapping().data());
  const size_t pages = (c.shards()[0].mapping().size() + page - 1) / page;
  // Truth, page by page: released iff every byte of the page belongs to a dropped tensor.
  std::vector<int> dropped_bytes(pages, 0);
  for (const TensorSpec& t : specs) {
    if (t.name.rfind("drop.", 0) != 0) continue;
    const auto b = reinterpret_cast<uintptr_t>(c.Get(t.name).data) - base;
    for (uintptr_t x = b; x < b + c.Get(t.name).nbytes(); ++x) ++dropped_bytes[x / page];
  }
  int64_t expected = 0;
  for (size_t p = 0; p < pages; ++p)
    if (dropped_bytes[p] == static_cast<int>(page)) expected += static_cast<int64_t>(page);
  ASSERT_GT(expected, 0);

  EXPECT_EQ(c.Release([](std::string_view n) { return n.rfind("drop.", 0) == 0; }), expected);
  for (size_t p = 0; p < pages; ++p) {
    const bool released = dropped_bytes[p] == static_cast<int>(page);
    EXPECT_EQ(PagePermissions(base + p * page), released ? "---p" : "r--p") << "page " << p;
  }
  // The kept tensors read as written (a released page among them would fault here).
  for (const char* name : {"keep.a", "keep.d"}) {
    const TensorView v = c.Get(name);
    for (size_t i = 0; i < v.nbytes(); ++i)
      ASSERT_EQ(v.data[i], static_cast<std::byte>(7 + i)) << name << " byte " << i;
  }
  EXPECT_EQ(c.Release([](std::string_view) { return false; }), 0);
}

}  // namespace
}  // namespace dsinfer
