// `dsinfer chat-template --request FILE.json`: prints the prompt text that DeepSeek-V3.2's chat
// encoding (docs/model.md §9.2) makes of an OpenAI chat request, byte for byte, with no newline
// added. `--request -` reads stdin. `--model` is accepted for symmetry with the other
// commands; the V3.2 encoding does not depend on the checkpoint.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "text/chat_encoding.h"
#include "text/py_json.h"

namespace dsinfer::cli {
namespace {

struct ChatTemplateOptions {
  std::string model_dir;
  std::string request_path;
};

std::string ReadAll(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the request file");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int RunChatTemplate(const ChatTemplateOptions& opts) {
  std::string body = ReadAll(opts.request_path);
  std::string what = opts.request_path == "-" ? "stdin" : opts.request_path;
  text::ChatPrompt prompt = text::EncodeChatRequest(text::ParseJsonText(body, what));
  std::fwrite(prompt.text.data(), 1, prompt.text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

CommandRegistrar reg("chat-template", [](CLI::App& app) {
  auto* sub = app.add_subcommand("chat-template",
                                 "Print the DeepSeek-V3.2 prompt text of an OpenAI chat request");
  auto opts = std::make_shared<ChatTemplateOptions>();
  sub->add_option("--model", opts->model_dir, "Model directory (unused by the V3.2 encoding)");
  sub->add_option("--request", opts->request_path,
                  "Chat request JSON file (messages, tools, response_format, thinking); - = stdin")
      ->required();
  return [opts] { return RunChatTemplate(*opts); };
});

}  // namespace
}  // namespace dsinfer::cli
