#include "format/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include <unistd.h>

#include "base/error.h"
#include "base/mapped_file.h"
#include "format/gguf_checkpoint.h"
#include "format/json_util.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kIndexName = "model.safetensors.index.json";

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// tensor name → shard file name, from the HF index
// {"metadata": {"total_size": N}, "weight_map": {tensor: shard}}.
std::map<std::string, std::string> ReadIndex(const std::string& path,
                                             std::optional<ExpertShare>& share) {
  const MappedFile file = MappedFile::Open(path);
  const std::string_view text(reinterpret_cast<const char*>(file.bytes().data()),
                              file.bytes().size());
  const Json j = ParseJsonStrict<Json>(text, path, {.top_key = "key", .max_depth = 4});
  if (!j.is_object()) throw Error(path + ": not a JSON object");
  auto map = j.find("weight_map");
  if (map == j.end() || !map->is_object()) throw Error(path + ": no \"weight_map\" object");
  std::map<std::string, std::string> out;
  for (auto it = map->begin(); it != map->end(); ++it) {
    if (!it.value().is_string()) {
      throw Error(path + ": weight_map entry \"" + it.key() + "\" is not a file name");
    }
    const std::string shard = it.value().get<std::string>();
    // Shards live in the checkpoint folder itself: no absolute paths or escapes.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      throw Error(path + ": weight_map entry \"" + it.key() + "\" names an invalid shard \"" +
                  shard + "\"");
    }
    out[it.key()] = shard;
  }
  if (out.empty()) throw Error(path + ": weight_map is empty");
  share.reset();
  auto meta = j.find("metadata");
  if (meta != j.end() && meta->is_object()) {
    auto it = meta->find(std::string(kExpertShareKey));
    if (it != meta->end()) {
      const Json& v = *it;
      auto field = [&](const char* key) -> int64_t {
        auto f = v.is_object() ? v.find(key) : v.end();
        if (!v.is_object() || f == v.end() || !f->is_number_integer())
          throw Error(path + ": metadata." + std::string(kExpertShareKey) + "." + key +
                      " must be an integer");
        return f->get<int64_t>();
      };
      const int64_t rank = field("rank"), ranks = field("ranks");
      if (ranks < 1 || ranks > (1 << 20) || rank < 0 || rank >= ranks)
        throw Error(path + ": metadata." + std::string(kExpertShareKey) + " names rank " +
                    std::to_string(rank) + " of " + std::to_string(ranks));
      share = ExpertShare{.rank = static_cast<int>(rank), .ranks = static_cast<int>(ranks)};
    }
  }
  return out;
}

// Every *.safetensors file of `dir`, sorted by name.
std::vector<std::string> ListShards(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") names.push_back(entry.path().filename());
  }
  if (ec) throw Error(dir + ": cannot list: " + ec.message());
  std::sort(names.begin(), names.end());
  if (names.empty()) throw Error(dir + ": no " + kIndexName + " and no *.safetensors files");
  return names;
}

}  // namespace

Checkpoint Checkpoint::Open(const std::string& dir) {
  if (IsGgufPath(dir)) return OpenGgufCheckpoint(dir);
  Checkpoint c;
  c.dir_ = dir;
  c.config_ = ModelConfig::FromFile(dir + "/config.json");

  const std::string index_path = dir + "/" + kIndexName;
  std::map<std::string, std::string> index;  // tensor → shard file name
  std::vector<std::string> shard_names;
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    index = ReadIndex(index_path, c.expert_share_);
    std::set<std::string> unique;
    for (const auto& [tensor, shard] : index) unique.insert(shard);
    shard_names.assign(unique.begin(), unique.end());
  } else {
    shard_names = ListShards(dir);
  }

  for (const std::string& name : shard_names) {
    const std::string path = dir + "/" + name;
    if (!index.empty() && !fs::exists(path, ec)) {
      const auto it =
          std::find_if(index.begin(), index.end(), [&](const auto& e) { return e.second == name; });
      throw Error(index_path + ": shard \"" + name + "\" (holding \"" + it->first +
                  "\") does not exist");
    }
    c.shards_.push_back(SafetensorsFile::Open(path));
    c.mapped_.push_back(c.shards_.back().mapping());
  }
  // Every tensor of every shard, once. A tensor missing from the index is tolerated (the
  // shard is authoritative), but a tensor in two shards is ambiguous.
  for (size_t s = 0; s < c.shards_.size(); ++s) {
    for (const TensorInfo& t : c.shards_[s].tensors()) {
      auto [it, inserted] = c.tensors_.try_emplace(t.name, Slot{s, c.shards_[s].View(t)});
      if (!inserted) {
        throw Error(c.shards_[s].path() + ": tensor \"" + t.name + "\" is also in " +
                    c.shards_[it->second.shard].path());
      }
    }
  }
  for (const auto& [tensor, shard] : index) {
    auto it = c.tensors_.find(tensor);
    if (it == c.tensors_.end() || c.shards_[it->second.shard].path() != dir + "/" + shard) {
      throw Error(index_path + ": tensor \"" + tensor + "\" is listed in " + shard + ", but " +
                  dir + "/" + shard + " does not contain it");
    }
  }
  return c;
}

bool Checkpoint::Has(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

TensorView Checkpoint::Get(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw Error(dir_ + ": tensor \"" + std::string(name) + "\" not found in the checkpoint");
  }
  return it->second.view;
}

Checkpoint Checkpoint::FromViews(std::string source, ModelConfig config,
                                 std::vector<std::pair<std::string, TensorView>> views,
                                 std::shared_ptr<const void> keepalive,
                                 std::vector<std::span<const std::byte>> mapped) {
  Checkpoint c;
  c.dir_ = std::move(source);
  c.config_ = std::move(config);
  c.keepalive_ = std::move(keepalive);
  c.mapped_ = std::move(mapped);
  for (auto& [name, view] : views) {
    if (!c.tensors_.try_emplace(name, Slot{kNoShard, view}).second)
      throw Error(c.dir_ + ": tensor \"" + name + "\" is given twice");
  }
  return c;
}

TensorView Checkpoint::Get(std::string_view name, DType dtype,
                           const std::vector<int64_t>& shape) const {
  TensorView v = Get(name);
  if (v.dtype() != dtype || v.shape() != shape) {
    const size_t s = tensors_.find(name)->second.shard;
    throw Error((s == kNoShard ? dir_ : shards_[s].path()) + ": tensor \"" + std::string(name) +
                "\" is " + std::string(DTypeName(v.dtype())) + " " + ShapeString(v.shape()) +
                ", expected " + std::string(DTypeName(dtype)) + " " + ShapeString(shape));
  }
  return v;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;  // std::map order = sorted
}

int64_t Checkpoint::Release(const std::function<bool(std::string_view)>& drop) {
  return ForPages(drop, /*for_good=*/true);
}

int64_t Checkpoint::Drop(const std::function<bool(std::string_view)>& which) {
  return ForPages(which, /*for_good=*/false);
}

int64_t Checkpoint::ForPages(const std::function<bool(std::string_view)>& drop, bool for_good) {
  const auto release = for_good ? &ReleaseMappedPages : &DropMappedPages;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  int64_t released = 0;
  for (std::span<const std::byte> region : mapped_) {
    const auto lo = reinterpret_cast<uintptr_t>(region.data()), hi = lo + region.size();
    // Byte ranges of this mapping's dropped and kept tensors.
    std::vector<std::pair<uintptr_t, uintptr_t>> dropped, kept;
    for (const auto& [name, slot] : tensors_) {
      const auto b = reinterpret_cast<uintptr_t>(slot.view.data), e = b + slot.view.nbytes();
      if (slot.view.nbytes() == 0 || b < lo || e > hi) continue;
      if (drop(name))
        dropped.emplace_back(b, e);
      else  // rounded outwards: a page shared with a kept tensor stays
        kept.emplace_back(b / page * page, (e + page - 1) / page * page);
    }
    std::sort(dropped.begin(), dropped.end());
    std::sort(kept.begin(), kept.end());
    // Dropped tensors less than a page apart (alignment padding) form runs: a page may hold the
    // end of one and the start of the next. Each run's whole pages go, but for the kept ranges
    // cut out of it.
    std::vector<std::pair<uintptr_t, uintptr_t>> runs;
    for (const auto& r : dropped) {
      if (!runs.empty() && r.first < runs.back().second + page)
        runs.back().second = std::max(runs.back().second, r.second);
      else
        runs.push_back(r);
    }
    size_t k = 0;
    for (auto [b, e] : runs) {
      b = (b + page - 1) / page * page;
      e = e / page * page;
      while (k < kept.size() && kept[k].second <= b) ++k;
      for (size_t j = k; j < kept.size() && kept[j].first < e && b < e; ++j) {
        if (kept[j].first > b)
          released += static_cast<int64_t>(
              release({reinterpret_cast<const std::byte*>(b), kept[j].first - b}));
        b = std::max(b, kept[j].second);
      }
      if (b < e)
        released += static_cast<int64_t>(release({reinterpret_cast<const std::byte*>(b), e - b}));
    }
  }
  return released;
}

}  // namespace dsinfer
