// Runs a whole token sequence through `Model::Forward` in one of the schedules that must all
// give the same logits (docs/model.md §3.7): one prefill, chunked prefill, or a prefill of P
// tokens followed by one-token decode steps. Used by `dsinfer logits` and the identity tests.
// Not thread-safe (drives one Model).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/model.h"

namespace dsinfer {

struct Schedule {
  bool decode = false;     // after the prefill part, one token per Forward call
  int64_t prefill_len = 0; // decode: tokens of the initial prefill (0: decode from the start)
  int64_t chunk = 0;       // prefill part in chunks of this many tokens (0: one call)
};

struct SequenceLogits {
  int64_t rows = 0, vocab = 0;
  std::vector<float> logits;      // [rows, vocab], row i = logits after token i
  int64_t mtp_rows = 0;
  std::vector<float> mtp_logits;  // [mtp_rows, vocab], row i predicts token i + 2
};

// Throws Error for an empty sequence or a schedule that does not fit it.
SequenceLogits RunSequence(Model& model, const SequenceOptions& options,
                           std::span<const int32_t> ids, const Schedule& schedule,
                           Dumper* dump = nullptr);

}  // namespace dsinfer
