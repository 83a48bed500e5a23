#include "cli/model_dir.h"

#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "cli/progress.h"
#include "tools/gen_model.h"

namespace dsinfer::cli {
namespace fs = std::filesystem;

std::string CacheModelDir(const std::string& name) {
  std::string cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    cache = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    cache = std::string(home) + "/.cache";
  } else {
    throw Error(
        "cannot locate the default model: set HOME, XDG_CACHE_HOME or DSINFER_DEFAULT_MODEL");
  }
  return cache + "/dsinfer/" + name;
}

std::string DefaultModelDir() {
  if (const char* env = std::getenv("DSINFER_DEFAULT_MODEL"); env && *env) return env;
  // The trained demo model committed in the source tree (tools/train/train.sh), when there.
  const std::string trained = std::string(DSINFER_SOURCE_DIR) + "/models/demo";
  if (fs::is_regular_file(fs::path(trained) / "config.json")) return trained;
  return CacheModelDir("mini-seed0");
}

namespace {

// Removes `<dir>.partial-<pid>` siblings left by interrupted runs whose process is gone.
void RemoveStalePartials(const fs::path& target) {
  const std::string prefix = target.filename().string() + ".partial-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(target.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH)
      fs::remove_all(entry.path(), ec);
  }
}

}  // namespace

bool EnsureGeneratedModel(const std::string& dir, const GenOptions& options) {
  fs::path target = fs::path(dir).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "…/model/" → "…/model"
  if (fs::exists(target / "config.json")) return false;
  if (fs::exists(target) && !fs::is_empty(target))
    throw Error("model directory " + dir + " exists but holds no config.json; remove it");
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  RemoveStalePartials(target);
  const fs::path tmp = target.string() + ".partial-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  std::string what = "preset " + options.preset + ", seed " + std::to_string(options.seed);
  for (const std::string& kv : options.sets) what += ", " + kv;
  std::fprintf(stderr, "dsinfer: generating a model (%s) in %s\n", what.c_str(), dir.c_str());
  try {
    ProgressBar bar("gen-model " + options.preset);
    GenOptions o = options;
    o.out_dir = tmp.string();
    o.force = false;
    o.progress = [&](uint64_t d, uint64_t t) { bar.Update(d, t); };
    GenerateCheckpoint(o);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  if (fs::exists(target) && fs::is_empty(target)) fs::remove(target, ec);
  fs::rename(tmp, target, ec);
  if (ec) {  // another process may have finished first; its model is as good as ours
    fs::remove_all(tmp, ec);
    if (!fs::exists(target / "config.json"))
      throw Error("cannot move the generated model into " + dir);
  }
  return true;
}

bool EnsureDefaultModel(const std::string& dir) {
  return EnsureGeneratedModel(dir, {.preset = "mini", .seed = 0});
}

std::string PresetModelDir(const std::string& preset, const std::vector<std::string>& sets) {
  std::string name = preset + "-seed0";
  for (size_t i = 0; i < sets.size(); ++i) {
    std::string kv = sets[i];
    for (char& ch : kv)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.' && ch != '=')
        ch = '-';
    name += (i == 0 ? "-" : ",") + kv;
  }
  const std::string dir = CacheModelDir(name);
  EnsureGeneratedModel(dir, {.preset = preset, .seed = 0, .sets = sets});
  return dir;
}

std::string ResolveModelDir(const std::optional<std::string>& model) {
  if (model) return *model;
  const std::string dir = DefaultModelDir();
  EnsureDefaultModel(dir);
  return dir;
}

}  // namespace dsinfer::cli
