// Tokenizer tests against Hugging Face's own implementation (golden ids written by the
// `tokenizers` node binding, tests/text/make_golden.mjs) and against definitions.
#include "text/tokenizer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include "base/error.h"
#include "tests/unit/text/test_support.h"
#include "text/utf8.h"

namespace dsinfer::text {
namespace {

using testing::Golden;
using testing::V32Tokenizer;

std::string Hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) std::snprintf(buf, sizeof buf, "%02x", c), out += buf;
  return out;
}

TEST(TokenizerGolden, EveryLineMatchesTheOracle) {
  const auto& golden = Golden();
  ASSERT_GE(golden.size(), 5000u);
  size_t agree = 0, shown = 0;
  for (const auto& g : golden) {
    const auto ids = V32Tokenizer().Encode(g.bytes);
    if (ids == g.ids) {
      ++agree;
    } else if (shown++ < 5) {
      ADD_FAILURE() << "mismatch for bytes " << Hex(g.bytes) << "\n  text: " << g.text;
    }
  }
  std::printf("oracle agreement: %zu / %zu lines\n", agree, golden.size());
  EXPECT_EQ(agree, golden.size());
}

TEST(TokenizerGolden, DecodeInvertsEncodeOnValidText) {
  for (const auto& g : Golden()) {
    if (g.from_hex) continue;
    EXPECT_EQ(V32Tokenizer().Decode(g.ids), g.text) << Hex(g.text);
  }
}

// Invalid bytes reach HF as U+FFFD per maximal subpart (node's WHATWG TextDecoder made "text").
TEST(TokenizerGolden, InvalidUtf8IsReplacedLikeTheWhatwgDecoder) {
  size_t n = 0;
  for (const auto& g : Golden()) {
    if (!g.from_hex) continue;
    ++n;
    EXPECT_FALSE(IsValidUtf8(g.bytes)) << Hex(g.bytes);
    EXPECT_EQ(ReplaceInvalidUtf8(g.bytes), g.text) << Hex(g.bytes);
  }
  EXPECT_GE(n, 100u);
}

// Byte-level BPE loses nothing: any bytes decode back to themselves after UTF-8 repair.
TEST(Tokenizer, RandomBytesRoundTrip) {
  std::mt19937 rng(2026);
  const std::string alphabet[] = {" ",        "\t",           "\n",         "a",        "Z",
                                  "7",        "<think>",      "<｜User｜>", "中",       "😀",
                                  "\xC2\x85", "\xE1\xA0\x8E", "\xFF",       "\xE4\xB8", "'s"};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bytes;
    const int n = rng() % 40;
    for (int i = 0; i < n; ++i) {
      if (rng() % 3 == 0) {
        bytes += static_cast<char>(rng() & 0xFF);
      } else {
        bytes += alphabet[rng() % std::size(alphabet)];
      }
    }
    EXPECT_EQ(V32Tokenizer().Decode(V32Tokenizer().Encode(bytes)), ReplaceInvalidUtf8(bytes))
        << Hex(bytes);
  }
}

// Encode is const and thread-safe (per-thread scratch, mutex-guarded word cache).
TEST(Tokenizer, ConcurrentEncodeMatchesTheOracle) {
  const auto& golden = Golden();
  std::vector<std::thread> threads;
  std::vector<size_t> agree(4, 0);
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < golden.size(); i += 4)
        if (V32Tokenizer().Encode(golden[i].bytes) == golden[i].ids) ++agree[t];
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(agree[0] + agree[1] + agree[2] + agree[3], golden.size());
}

TEST(Tokenizer, ModelCardExample) {
  const std::string text =
      "<｜begin▁of▁sentence｜><｜User｜>hello<｜Assistant｜></think>Hello! I am DeepSeek."
      "<｜end▁of▁sentence｜><｜User｜>1+1=?<｜Assistant｜><think>";
  const std::vector<int32_t> want = {0,      128803, 33310, 128804, 128799, 19923,  3,
                                     342,    1030,   22651, 4374,   1465,   16,     1,
                                     128803, 19,     13,    19,     127252, 128804, 128798};
  EXPECT_EQ(V32Tokenizer().Encode(text), want);
  EXPECT_EQ(V32Tokenizer().Decode(want), text);
}

TEST(Tokenizer, SpecialIdsAndVocab) {
  const auto& tok = V32Tokenizer();
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.TokenToId("<think>"), 128798);
  EXPECT_EQ(tok.TokenToId("</think>"), 128799);
  EXPECT_EQ(tok.TokenToId("<｜User｜>"), 128803);
  EXPECT_EQ(tok.TokenToId("<｜Assistant｜>"), 128804);
  EXPECT_EQ(tok.IdToToken(128799), "</think>");
  EXPECT_EQ(tok.IdToToken(1), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tok.IdToToken(128815), std::nullopt);
  EXPECT_EQ(tok.TokenToId("no such token"), std::nullopt);
  // HF get_vocab_size(true) = 128000 + 818 added - 3 already in the vocab (oracle: 128815).
  EXPECT_EQ(tok.VocabSize(), 128815u);
  EXPECT_EQ(tok.IdLimit(), 128815);
  EXPECT_TRUE(tok.IsSpecial(0));
  EXPECT_FALSE(tok.IsSpecial(100));
  // HF skips ids it does not know when decoding.
  EXPECT_EQ(tok.Decode({33310, 129000, -5, 33310}), "hellohello");
}

double ThreadCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Encode speed on the corpus, in CPU time (the machine is shared: wall time is noisy). The first
// pass starts with an empty word cache when this test runs in its own process (ctest).
TEST(Tokenizer, Throughput) {
  size_t bytes = 0, n_ids = 0;
  for (const auto& g : Golden()) bytes += g.bytes.size();
  V32Tokenizer();  // load outside the timing
  for (const char* pass : {"first", "second"}) {
    const double t0 = ThreadCpuSeconds();
    for (const auto& g : Golden()) n_ids += V32Tokenizer().Encode(g.bytes).size();
    const double s = ThreadCpuSeconds() - t0;
    std::printf("encode, %s pass: %.2f MB in %.3f CPU-s = %.1f MB/s\n", pass, bytes / 1e6, s,
                bytes / 1e6 / s);
  }
  EXPECT_GT(n_ids, 0u);
}

// Error cases: the message names the culprit.
void ExpectLoadError(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

nlohmann::json Tiny() {
  return nlohmann::json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
}

TEST(TokenizerErrors, NamesTheCulprit) {
  ExpectLoadError([] { Tokenizer::FromFile("/nonexistent/tokenizer.json"); },
              "/nonexistent/tokenizer.json");
  ExpectLoadError([] { Tokenizer::FromJson("{\"model\": [1,", "", "bad.json"); },
              "bad.json: malformed JSON");
  auto with = [](const char* key, const nlohmann::json& value) {
    auto j = Tiny();
    j[key] = value;
    return j.dump();
  };
  ExpectLoadError([&] { Tokenizer::FromJson(with("model", {{"type", "WordPiece"}})); }, "WordPiece");
  ExpectLoadError([&] { Tokenizer::FromJson(with("normalizer", {{"type", "NFC"}})); }, "NFC");
  ExpectLoadError([&] { Tokenizer::FromJson(with("decoder", {{"type", "Metaspace"}})); }, "Metaspace");
  ExpectLoadError([&] { Tokenizer::FromJson(with("pre_tokenizer", {{"type", "Digits"}})); }, "Digits");
  ExpectLoadError([&] { Tokenizer::FromJson(with("truncation", {{"max_length", 5}})); }, "truncation");
  nlohmann::json split = {{"type", "Split"},
                          {"pattern", {{"Regex", "\\w+"}}},
                          {"behavior", "Isolated"},
                          {"invert", false}};
  ExpectLoadError([&] { Tokenizer::FromJson(with("pre_tokenizer", split)); }, "\\w");
  split["pattern"] = {{"Regex", "\\p{Han}"}};
  ExpectLoadError([&] { Tokenizer::FromJson(with("pre_tokenizer", split)); }, "\\p{Han}");
  split["pattern"] = {{"Regex", "(ab"}};
  ExpectLoadError([&] { Tokenizer::FromJson(with("pre_tokenizer", split)); }, "(ab");
  split["pattern"] = {{"Regex", "a"}};
  split["behavior"] = "Sideways";
  ExpectLoadError([&] { Tokenizer::FromJson(with("pre_tokenizer", split)); }, "Sideways");
  auto bad_merge = Tiny();
  bad_merge["model"]["merges"] = {"a c"};
  ExpectLoadError([&] { Tokenizer::FromJson(bad_merge.dump()); }, "\"c\" not in vocab");
  auto huge_id = Tiny();
  huge_id["model"]["vocab"]["b"] = 2147483647;
  ExpectLoadError([&] { Tokenizer::FromJson(huge_id.dump()); }, "vocab id of \"b\"");
  ExpectLoadError([] { Tokenizer::FromJson(Tiny().dump(), R"({"bos_token": {"x": 1}})"); },
              "bos_token");
  auto bad_id = Tiny();
  bad_id["added_tokens"] = {{{"id", 7}, {"content", "<x>"}, {"special", true}}};
  ExpectLoadError([&] { Tokenizer::FromJson(bad_id.dump()); }, "<x>");
}

TEST(Tokenizer, FromFileReadsTheConfigBesideIt) {
  const auto dir = std::filesystem::temp_directory_path() / "dsinfer_tokenizer_test";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer.json") << testing::V32TokenizerJson().dump();
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"bos_token": "<think>", "eos_token": {"content": "</think>"}})";
  }
  const auto tok = Tokenizer::FromFile((dir / "tokenizer.json").string());
  EXPECT_EQ(tok.bos_id(), 128798);
  EXPECT_EQ(tok.eos_id(), 128799);
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": "<nope>"})";
  ExpectLoadError([&] { Tokenizer::FromFile((dir / "tokenizer.json").string()); }, "<nope>");
  std::filesystem::remove_all(dir);
}

// A tokenizer.json that is a named pipe used to block `run` / `serve` forever; now refused.
// (If reading blocks, the test fails after 5 s and unblocks it by opening the writer.)
TEST(Tokenizer, FifoIsRejectedWithoutBlocking) {
  const std::string path = ::testing::TempDir() + "tokenizer_test_fifo.json";
  std::remove(path.c_str());
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto result = std::async(std::launch::async, [&]() -> std::string {
    try {
      Tokenizer::FromFile(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  });
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "Tokenizer::FromFile blocked on a FIFO";
    const int w = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
  }
  EXPECT_NE(result.get().find("not a regular file"), std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dsinfer::text
