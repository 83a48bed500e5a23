// A checkpoint directory as it ships on Hugging Face: config.json, one or more safetensors
// shards (model.safetensors.index.json maps tensor → shard; without it, every *.safetensors
// file in the folder), tokenizer files. All shards stay mmapped for the checkpoint's life.
// Thread-safe to read after Open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/config.h"
#include "format/safetensors.h"

namespace dsinfer {

// A checkpoint that holds one rank's share of the routed experts (`dsinfer split-experts`,
// docs/mpi.md): its index's metadata has {"dsinfer_expert_share": {"rank": R, "ranks": N}}, and
// of the routed experts it holds only rank R of N's (ExpertRangeOf); every other tensor is there.
inline constexpr std::string_view kExpertShareKey = "dsinfer_expert_share";
struct ExpertShare {
  int rank = 0;
  int ranks = 1;
};

class Checkpoint {
 public:
  // Throws `Error` naming the file: missing or invalid config.json, bad index json (invalid
  // JSON, no `weight_map`, a shard name that is not a plain file name), a missing shard, a
  // shard that fails to parse, a tensor listed in the index but missing from its shard, the
  // same tensor in two shards. With an index, only the shards it names are opened; a tensor
  // present in one of them but absent from the index is tolerated (listed once).
  // `dir` may also be a GGUF file or split set (format/gguf_checkpoint.h).
  static Checkpoint Open(const std::string& dir);
  // A checkpoint whose tensors live elsewhere (a GGUF file seen with HF names and layouts):
  // `views` point into memory that `keepalive` owns. `source` stands for `dir()`. `mapped` lists
  // the file mappings among that memory (views elsewhere, e.g. decoded copies, are never
  // released by `Release`).
  static Checkpoint FromViews(std::string source, ModelConfig config,
                              std::vector<std::pair<std::string, TensorView>> views,
                              std::shared_ptr<const void> keepalive,
                              std::vector<std::span<const std::byte>> mapped = {});

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // Set when the index marks this checkpoint as one rank's share of the routed experts.
  const std::optional<ExpertShare>& expert_share() const { return expert_share_; }

  bool Has(std::string_view name) const;
  // The tensor `name`; throws `Error` naming it if absent.
  TensorView Get(std::string_view name) const;
  // Same, and checks dtype and shape; the message names tensor, expected and actual.
  TensorView Get(std::string_view name, DType dtype, const std::vector<int64_t>& shape) const;
  // All tensor names, sorted.
  std::vector<std::string> Names() const;

  // Takes the file pages of the tensors for which `drop(name)` is true out of this process's
  // memory for good (ReleaseMappedPages): a rank of an expert-parallel job drops the other
  // ranks' routed experts, so that neither readahead nor the kernel's fault-around maps them
  // into it. A page that also holds bytes of a kept tensor stays. The dropped tensors stay
  // listed (names, shapes) but their bytes must never be read again. Not thread-safe: call
  // before the checkpoint is shared. Returns the bytes released.
  int64_t Release(const std::function<bool(std::string_view)>& drop);
  // The same pages leave this process's resident memory but stay readable (DropMappedPages: a
  // later read faults them in from the file again): for tensors the model has copied (bf16
  // numerics' repacked FP8 weights), which f32 numerics may still read. Returns the bytes.
  int64_t Drop(const std::function<bool(std::string_view)>& which);

 private:
  int64_t ForPages(const std::function<bool(std::string_view)>& which, bool for_good);

  std::string dir_;
  ModelConfig config_;
  std::vector<SafetensorsFile> shards_;
  struct Slot {
    size_t shard;  // index into shards_, or kNoShard for a view from FromViews
    TensorView view;
  };
  static constexpr size_t kNoShard = static_cast<size_t>(-1);
  std::map<std::string, Slot, std::less<>> tensors_;
  std::shared_ptr<const void> keepalive_;
  std::vector<std::span<const std::byte>> mapped_;  // the file mappings the views point into
  std::optional<ExpertShare> expert_share_;
};

}  // namespace dsinfer
