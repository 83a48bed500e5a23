// Shared helpers of the chat encoding / completion parser tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

namespace dsinfer::text::chat_testing {

using ojson = nlohmann::ordered_json;

inline const std::string kBos = "<｜begin▁of▁sentence｜>";
inline const std::string kEos = "<｜end▁of▁sentence｜>";
inline const std::string kUser = "<｜User｜>";
inline const std::string kAsst = "<｜Assistant｜>";

inline std::string ReadFileOrFail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return {};
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string InRepoFixtureDir() { return DSINFER_SOURCE_DIR "/tests/golden/chat_encoding/"; }

struct Fixture {
  ojson input;         // {"tools": [...], "messages": [...]}
  std::string output;  // the prompt, without the file's final newline
};

// DeepSeek's golden fixture. test_output.txt ends with EOS plus one newline that the encoder
// does not write (a text-file convention); it is checked and removed here.
inline Fixture LoadFixture(const std::string& dir = InRepoFixtureDir()) {
  Fixture f;
  f.input = ojson::parse(ReadFileOrFail(dir + "test_input.json"));
  f.output = ReadFileOrFail(dir + "test_output.txt");
  EXPECT_TRUE(f.output.ends_with(kEos + "\n")) << "unexpected end of test_output.txt";
  if (!f.output.empty()) f.output.pop_back();
  return f;
}

// The fixed TOOLS block text, cut from the golden output (an independent copy of the template).
inline std::string ToolsHeadFromFixture() {
  std::string out = LoadFixture().output;
  size_t a = out.find("## Tools\n");
  size_t b = out.find("<functions>\n");
  EXPECT_NE(a, std::string::npos);
  EXPECT_NE(b, std::string::npos);
  return out.substr(a, b + 12 - a);
}

}  // namespace dsinfer::text::chat_testing
