#include "runtime/schedule.h"

#include <algorithm>
#include <string>

#include "base/error.h"

namespace dsinfer {

namespace {

// Call boundaries: [0, b1), [b1, b2), ... covering ids.
std::vector<int64_t> Boundaries(int64_t n, const Schedule& s) {
  if (s.chunk < 0) throw Error("--chunk must be ≥ 0 (got " + std::to_string(s.chunk) + ")");
  if (s.prefill_len < 0 || s.prefill_len > n)
    throw Error("--prefill-len " + std::to_string(s.prefill_len) + " is outside [0, " +
                std::to_string(n) + "] (the number of ids)");
  const int64_t prefill = s.decode ? s.prefill_len : n;
  std::vector<int64_t> b;
  const int64_t step = s.chunk > 0 ? s.chunk : std::max<int64_t>(prefill, 1);
  for (int64_t p = step; p < prefill; p += step) b.push_back(p);
  if (prefill > 0) b.push_back(prefill);
  for (int64_t p = prefill + 1; p <= n; ++p) b.push_back(p);
  return b;
}

}  // namespace

SequenceLogits RunSequence(Model& model, const SequenceOptions& options,
                           std::span<const int32_t> ids, const Schedule& schedule,
                           Dumper* dump) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n == 0) throw Error("no token ids given");
  SequenceState seq = model.NewSequence(options);
  SequenceLogits out;
  out.vocab = model.config().vocab_size;
  int64_t start = 0;
  for (int64_t end : Boundaries(n, schedule)) {
    ForwardResult r = model.Forward(seq, ids.subspan(start, end - start), start,
                                    /*all_logits=*/true, dump);
    out.logits.insert(out.logits.end(), r.logits.begin(), r.logits.end());
    out.rows += r.rows;
    out.mtp_logits.insert(out.mtp_logits.end(), r.mtp_logits.begin(), r.mtp_logits.end());
    out.mtp_rows += r.mtp_rows;
    start = end;
  }
  return out;
}

}  // namespace dsinfer
