#include "cli/mpi_job.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/page_map.h"
#include "format/dtype.h"
#include "model/routed_expert.h"

namespace dsinfer::cli {

namespace {

class Fnv1a {
 public:
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 0x100000001b3ULL;
  }
  void Add(std::string_view s) {
    Add(s.data(), s.size());
    Add("\0", 1);  // a separator, so ("ab", "c") and ("a", "bc") differ
  }
  void Add(int64_t v) { Add(&v, sizeof(v)); }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

CheckpointDigest DigestCheckpoint(const Checkpoint& ckpt) {
  Fnv1a config, tensors;
  config.Add(ckpt.config().ToJson().dump());
  // Routed experts enter as their kinds (the name with the expert's number replaced by '*'),
  // each once: a whole checkpoint and a share of it (split-experts) then digest alike.
  std::set<std::string> expert_kinds;
  for (const std::string& name : ckpt.Names()) {
    const TensorView v = ckpt.Get(name);
    std::string entry = name;
    const int64_t e = RoutedExpertOf(name);
    if (e >= 0) {
      const std::string marker = ".experts." + std::to_string(e) + ".";
      entry.replace(entry.find(marker), marker.size(), ".experts.*.");
    }
    entry += '\0' + std::string(DTypeName(v.dtype()));
    for (int64_t d : v.shape()) entry += ' ' + std::to_string(d);
    entry += ' ' + std::to_string(v.nbytes());
    if (e >= 0)
      expert_kinds.insert(entry);
    else
      tensors.Add(entry);
  }
  for (const std::string& kind : expert_kinds) tensors.Add(kind);
  return CheckpointDigest{.config = config.value(), .tensors = tensors.value()};
}

std::unique_ptr<Model> LoadModelOnRanks(dist::World& world, const std::string& dir,
                                        LoadOptions options) {
  options.exchange = &world;
  std::unique_ptr<Model> model = Model::Load(dir, options);
  const CheckpointDigest d = DigestCheckpoint(model->checkpoint());
  const std::vector<uint64_t> configs = world.AllGather(d.config);
  const std::vector<uint64_t> tables = world.AllGather(d.tensors);
  std::string diff;
  for (int r = 1; r < world.ranks(); ++r) {
    if (configs[r] != configs[0])
      diff += "; rank " + std::to_string(r) + "'s config (digest " + Hex(configs[r]) +
              ") differs from rank 0's (" + Hex(configs[0]) + ")";
    if (tables[r] != tables[0])
      diff += "; rank " + std::to_string(r) + "'s tensor table (digest " + Hex(tables[r]) +
              ") differs from rank 0's (" + Hex(tables[0]) + ")";
  }
  if (diff.empty()) return model;
  if (world.rank() == 0)
    world.Abort("the ranks did not load the same checkpoint (rank 0 loaded " + dir + ")" + diff +
                    ": every rank must load the same config.json and tensors (docs/mpi.md)",
                2);
  world.Barrier();  // rank 0 is ending the job; it never enters this barrier
  throw Error("the ranks did not load the same checkpoint");
}

std::string DescribeAssignment(int64_t experts, int ranks) {
  std::string s;
  for (int r = 0; r < ranks; ++r) {
    const ExpertRange e = ExpertRangeOf(experts, r, ranks);
    s += (r ? ", rank " : "rank ") + std::to_string(r) + ": ";
    s += e.size() == 0 ? "no experts"
                       : "experts " + std::to_string(e.first) + "-" + std::to_string(e.end - 1);
  }
  return s;
}

ExpertResidency MeasureExpertResidency(const Model& model) {
  const Checkpoint& ckpt = model.checkpoint();
  const ExpertRange mine = model.experts();
  PageMap pages;
  ExpertResidency r;
  for (const std::string& name : ckpt.Names()) {
    const int64_t e = RoutedExpertOf(name);
    if (e < 0) continue;
    const TensorView v = ckpt.Get(name);
    const int64_t resident = pages.MappedBytes(v.data, v.nbytes());
    r.all_bytes += static_cast<int64_t>(v.nbytes());
    if (mine.Has(e)) {
      r.own_bytes += static_cast<int64_t>(v.nbytes());
      r.own_resident += resident;
    } else {
      r.other_resident += resident;
    }
  }
  return r;
}

void ReportExpertResidency(dist::World* world, const Model& model, const std::string& command) {
  const ExpertResidency mine = MeasureExpertResidency(model);
  const int ranks = world ? world->ranks() : 1;
  std::vector<ExpertResidency> all(ranks, mine);
  if (world) {
    const std::vector<uint64_t> own = world->AllGather(mine.own_bytes);
    const std::vector<uint64_t> own_resident = world->AllGather(mine.own_resident);
    const std::vector<uint64_t> other_resident = world->AllGather(mine.other_resident);
    // The ranks' experts partition all of them: their sum is every expert's bytes, also when
    // a rank loaded only its share (whose files hold no other expert to count).
    int64_t all_bytes = 0;
    for (uint64_t b : own) all_bytes += static_cast<int64_t>(b);
    for (int r = 0; r < ranks; ++r)
      all[r] = ExpertResidency{.own_bytes = static_cast<int64_t>(own[r]),
                               .own_resident = static_cast<int64_t>(own_resident[r]),
                               .other_resident = static_cast<int64_t>(other_resident[r]),
                               .all_bytes = all_bytes};
    if (world->rank() != 0) return;
  }
  for (int r = 0; r < ranks; ++r) {
    const ExpertResidency& x = all[r];
    const double total = x.all_bytes > 0 ? static_cast<double>(x.all_bytes) : 1.0;
    std::fprintf(stderr,
                 "%s: rank %d of %d: routed-expert bytes resident: own %lld of %lld, others' "
                 "%lld, of all %lld (%.1f%% of all; its share %.1f%%)\n",
                 command.c_str(), r, ranks, static_cast<long long>(x.own_resident),
                 static_cast<long long>(x.own_bytes), static_cast<long long>(x.other_resident),
                 static_cast<long long>(x.all_bytes),
                 100.0 * static_cast<double>(x.own_resident + x.other_resident) / total,
                 100.0 * static_cast<double>(x.own_bytes) / total);
  }
}

}  // namespace dsinfer::cli
