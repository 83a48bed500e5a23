// The start of a command that runs across the ranks of an MPI job (docs/mpi.md): every rank
// loads its share of the model, then the ranks check that they loaded the same checkpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/world.h"
#include "format/checkpoint.h"
#include "model/model.h"
#include "runtime/engine.h"

namespace dsinfer::cli {

// 64-bit FNV-1a digests of what every rank must agree on: the config (every field, as
// `ModelConfig::ToJson` writes it, so formatting of config.json does not matter) and the tensor
// table (each tensor's name, dtype, shape and byte size, in name order; the routed experts'
// tensors by kind — name with the expert number as '*' — each kind once, so a rank's share of
// the experts made by `split-experts` digests as the whole checkpoint does). Weight bytes are
// not read (that would read the whole checkpoint on every rank).
struct CheckpointDigest {
  uint64_t config = 0;
  uint64_t tensors = 0;
};
CheckpointDigest DigestCheckpoint(const Checkpoint& ckpt);

// A collective. Loads `dir` as rank `world.rank()` of an expert-parallel job (its routed
// experts only) and compares every rank's `DigestCheckpoint` with rank 0's: on a difference
// rank 0 ends the job naming each rank that differs and in what; a rank that cannot load (a
// missing or broken file) throws, and `main` ends the job naming that rank and the file.
// `options.exchange` is set to `world` (the other options, e.g. numerics, are used as given).
std::unique_ptr<Model> LoadModelOnRanks(dist::World& world, const std::string& dir,
                                        LoadOptions options = {});

// The engines of `serve` across ranks kept in step over the world (runtime/engine.h): rank 0
// leads; each round's inputs go out in a patient broadcast (an idle server's followers sleep);
// a failure ends the job (World::Abort).
class WorldReplica final : public EngineReplica {
 public:
  explicit WorldReplica(dist::World& world) : world_(world) {}
  bool leader() const override { return world_.rank() == 0; }
  void Share(std::string& bytes) override { world_.BroadcastPatiently(bytes); }
  std::vector<uint64_t> Gather(uint64_t value) override { return world_.AllGather(value); }
  [[noreturn]] void Fail(const std::string& message) override {
    world_.Abort(message, 1);
    std::abort();  // Abort does not return (a virtual call: the compiler cannot see it)
  }

 private:
  dist::World& world_;
};

// "rank 0: experts 0-3, rank 1: experts 4-7" (the assignment of ExpertRangeOf).
std::string DescribeAssignment(int64_t experts, int ranks);

// How much of the routed experts' bytes this process holds, measured in its own page tables
// (base/page_map.h): what it touched of the mmapped checkpoint, not what the page cache holds.
// Bytes are those of the experts' tensors (weights and block scales, `RoutedExpertOf`).
struct ExpertResidency {
  int64_t own_bytes = 0;       // the tensors of this process's experts (`Model::experts`)
  int64_t own_resident = 0;    // ... of them, on pages mapped in this process
  int64_t other_resident = 0;  // other ranks' experts' bytes on pages mapped in this process
  int64_t all_bytes = 0;       // every routed expert's tensors
};
ExpertResidency MeasureExpertResidency(const Model& model);

// Measures `MeasureExpertResidency` on every rank (a collective when `world` is set) and prints
// one line per rank on rank 0's stderr (or this process's line without a world):
//   "<command>: rank R of N: routed-expert bytes resident: own O of S, others' X, of all T
//    (P% of all; its share Q%)"
void ReportExpertResidency(dist::World* world, const Model& model, const std::string& command);

}  // namespace dsinfer::cli
