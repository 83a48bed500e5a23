#include "cli/commands.h"

#include <map>

namespace dsinfer::cli {
namespace {

std::map<std::string, AddFn>& Registry() {
  static std::map<std::string, AddFn> registry;
  return registry;
}

}  // namespace

CommandRegistrar::CommandRegistrar(const std::string& name, AddFn add) {
  Registry().emplace(name, std::move(add));
}

std::vector<Command> AddAllCommands(CLI::App& app) {
  std::vector<Command> out;
  for (auto& [name, add] : Registry()) {
    size_t before = app.get_subcommands({}).size();
    RunFn run = add(app);
    auto subs = app.get_subcommands({});
    if (subs.size() > before) out.push_back({subs.back(), std::move(run)});
  }
  return out;
}

}  // namespace dsinfer::cli
