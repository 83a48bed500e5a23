#include "tools/split_experts.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "format/checkpoint.h"
#include "format/gguf_checkpoint.h"
#include "model/expert_parallel.h"
#include "model/routed_expert.h"

namespace dsinfer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

// Writes rank `rank`'s share into `dir` (which must not exist); returns its tensor bytes.
uint64_t WriteShare(const Checkpoint& ckpt, const SplitExpertsOptions& o, int rank,
                    const std::string& dir, int64_t& tensors, uint64_t& done, uint64_t total) {
  const ExpertRange mine = ExpertRangeOf(ckpt.config().n_routed_experts, rank, o.ranks);
  fs::create_directories(dir);
  // The checkpoint's other files: config.json, tokenizer files, generation config, licence...
  for (const auto& entry : fs::directory_iterator(o.model_dir)) {
    const fs::path& p = entry.path();
    if (!entry.is_regular_file() || p.extension() == ".safetensors" || p.filename() == kIndexName)
      continue;
    fs::copy_file(p, fs::path(dir) / p.filename());
  }
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t bytes = 0;
  for (const SafetensorsFile& shard : ckpt.shards()) {
    std::vector<TensorSpec> specs;
    std::vector<const TensorInfo*> infos;
    for (const TensorInfo& t : shard.tensors()) {
      const int64_t e = RoutedExpertOf(t.name);
      if (!ckpt.Has(t.name) || (e >= 0 && !mine.Has(e))) continue;
      specs.push_back(TensorSpec{.name = t.name, .dtype = t.dtype, .shape = t.shape});
      infos.push_back(&t);
    }
    if (specs.empty()) continue;
    const std::string name = fs::path(shard.path()).filename().string();
    size_t next = 0;
    WriteSafetensors((fs::path(dir) / name).string(), specs,
                     [&](const TensorSpec& spec, std::span<std::byte> out) {
                       const TensorView v = shard.View(*infos[next++]);
                       DSINFER_CHECK(v.nbytes() == out.size(), "tensor size of " + spec.name);
                       std::memcpy(out.data(), v.data, out.size());
                       bytes += out.size();
                       done += out.size();
                       if (o.progress) o.progress(done, total);
                     },
                     shard.metadata());
    for (const TensorSpec& s : specs) weight_map[s.name] = name;
    tensors += static_cast<int64_t>(specs.size());
  }
  nlohmann::ordered_json index;
  index["metadata"]["total_size"] = bytes;
  index["metadata"][std::string(kExpertShareKey)] = {{"rank", rank}, {"ranks", o.ranks}};
  index["weight_map"] = std::move(weight_map);
  std::ofstream out(fs::path(dir) / kIndexName);
  out << index.dump(2) << "\n";
  out.close();
  if (!out) throw Error(dir + "/" + kIndexName + ": cannot write");
  return bytes;
}

}  // namespace

SplitExpertsResult SplitExperts(const SplitExpertsOptions& o) {
  if (IsGgufPath(o.model_dir))
    throw Error(o.model_dir + ": split-experts reads a safetensors checkpoint directory, not GGUF");
  const Checkpoint ckpt = Checkpoint::Open(o.model_dir);
  if (const auto& share = ckpt.expert_share())
    throw Error(o.model_dir + " is already rank " + std::to_string(share->rank) + " of " +
                std::to_string(share->ranks) + "'s share of the experts: split the whole checkpoint");
  const int64_t experts = ckpt.config().n_routed_experts;
  if (experts < 1) throw Error(o.model_dir + ": the model has no routed experts to split");
  if (o.ranks < 1 || o.ranks > experts)
    throw Error("--ranks " + std::to_string(o.ranks) + ": must be in [1, " +
                std::to_string(experts) + "] (n_routed_experts)");
  if (o.only_rank >= o.ranks)
    throw Error("--rank " + std::to_string(o.only_rank) + ": must be below --ranks " +
                std::to_string(o.ranks));
  std::vector<int> ranks;
  for (int r = 0; r < o.ranks; ++r)
    if (o.only_rank < 0 || r == o.only_rank) ranks.push_back(r);
  SplitExpertsResult result;
  uint64_t total = 0, done = 0;
  for (const std::string& name : ckpt.Names()) {
    const uint64_t n = ckpt.Get(name).nbytes();
    result.source_bytes += n;
    const int64_t e = RoutedExpertOf(name);
    for (int r : ranks)
      if (e < 0 || ExpertRangeOf(experts, r, o.ranks).Has(e)) total += n;
  }
  for (int r : ranks) {
    const std::string dir =
        (fs::path(o.out_dir) / ("rank-" + std::to_string(r) + "-of-" + std::to_string(o.ranks)))
            .string();
    if (fs::exists(dir)) {
      if (!o.force) throw Error(dir + " exists: pass --force to replace it");
      fs::remove_all(dir);
    }
    const std::string partial = dir + ".partial";  // renamed once complete
    fs::remove_all(partial);
    int64_t tensors = 0;
    uint64_t bytes = 0;
    try {
      bytes = WriteShare(ckpt, o, r, partial, tensors, done, total);
      fs::rename(partial, dir);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(partial, ec);
      throw;
    }
    result.dirs.push_back(dir);
    result.bytes.push_back(bytes);
    result.tensors.push_back(tensors);
  }
  return result;
}

}  // namespace dsinfer
