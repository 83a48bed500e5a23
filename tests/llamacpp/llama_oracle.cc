// llama_oracle: llama.cpp, driven through its public C API (include/llama.h), as an
// independent implementation of GGUF reading, quantisation and the DeepSeek forward pass.
// Built by scripts/llamacpp.sh against the llama.cpp release that the npm package
// node-llama-cpp ships (headers from its source bundle, prebuilt libraries from
// @node-llama-cpp/linux-x64); nothing of llama.cpp is in this repository.
//
//   llama_oracle logits   MODEL.gguf --ids 1,2,3 --out FILE [--threads N] [--kv f32|f16]
//       Runs the ids as one prompt (one batch, every position's logits) and writes the
//       logits as little-endian f32, row-major [n_ids, n_vocab]; prints "n_vocab N".
//       --dump-topk DIR also writes each layer's selections, int32 [n_ids, k], named as
//       `dsinfer logits --dump-dir` names them: DIR/L<L>.topk.npy, the DSA top-k (llama.cpp's
//       graph tensor "top_k-L": key positions; entries past a query's own position are masked
//       keys, which llama.cpp's top-k also returns while a query has fewer keys than k), and
//       DIR/L<L>.router_experts.npy, the MoE router's experts ("ffn_moe_topk-L").
//   llama_oracle quantize IN.gguf OUT.gguf TYPE [--threads N]
//       llama.cpp's own quantisation (what llama-quantize does): TYPE is a llama.cpp file
//       type name (Q4_K_M, Q5_K_M, Q6_K, Q8_0, Q4_0, Q3_K_M, Q2_K, IQ4_XS, F16, BF16, F32).
//   llama_oracle dequant FILE.gguf --out DIR [--tensors a,b,...]
//       ggml's own block decoding: reads the file with ggml's GGUF reader (gguf.h, data loaded
//       into a ggml context) and writes each tensor (all, or those listed) decoded by its type's
//       `to_float` (ggml_get_type_traits, the reference decoders of ggml-base; F32 copied) as
//       DIR/<tensor name>.npy, little-endian f32 in NumPy order (shape = reversed ne, n_dims
//       of them). Prints one line per tensor: "<name> <ggml type name> <elements>". The
//       bitwise truth for tests/reference/gguf_np.py's decoders (tests/llamacpp/check_dequant.py).
//
// Exit status 0 on success, 1 with a message on stderr otherwise.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "llama_oracle: %s\n", message.c_str());
  return 1;
}

bool Quiet() { return std::getenv("LLAMA_ORACLE_VERBOSE") == nullptr; }

void LogCallback(ggml_log_level level, const char* text, void*) {
  if (!Quiet() || level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

struct FileType {
  const char* name;
  llama_ftype ftype;
};

constexpr FileType kFileTypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},          {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"BF16", LLAMA_FTYPE_MOSTLY_BF16},     {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},     {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},     {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},     {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
};

// Selections captured from the graph, by tensor name: the DSA top-k ("top_k-L", key positions)
// and the MoE router's experts ("ffn_moe_topk-L"), each int32 [n_tokens, k].
struct Captured {
  int64_t k = 0;
  int64_t rows = 0;
  std::vector<int32_t> values;
};
std::map<std::string, Captured> g_captured;

// "PREFIX-<layer>" exactly (not the views llama.cpp names "top_k-0 (view)").
bool IsLayerTensor(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix + "-", 0) != 0 || name.size() == prefix.size() + 1) return false;
  return name.find_first_not_of("0123456789", prefix.size() + 1) == std::string::npos;
}

bool CaptureSelections(ggml_tensor* t, bool ask, void*) {
  const std::string name = ggml_get_name(t);
  const bool wanted = (IsLayerTensor(name, "top_k") || IsLayerTensor(name, "ffn_moe_topk")) &&
                      t->type == GGML_TYPE_I32 && t->nb[0] == sizeof(int32_t) && t->ne[2] == 1 && t->ne[3] == 1;
  if (ask) return wanted;
  if (!wanted) return true;
  Captured& captured = g_captured[name];
  captured.k = t->ne[0];
  captured.rows = t->ne[1];
  captured.values.resize(static_cast<size_t>(t->ne[0] * t->ne[1]));
  for (int64_t row = 0; row < t->ne[1]; ++row) {  // rows one by one: the tensor may be a view
    ggml_backend_tensor_get(t, captured.values.data() + row * t->ne[0], static_cast<size_t>(row) * t->nb[1],
                            static_cast<size_t>(t->ne[0]) * sizeof(int32_t));
  }
  return true;
}

// A .npy file (format 1.0) of `count` little-endian elements ("<i4" or "<f4") of `shape`
// (x86-64 is little-endian, so the values are written as they are in memory).
template <typename T>
bool WriteNpy(const std::string& path, const char* descr, const T* values, size_t count,
              const std::vector<int64_t>& shape) {
  std::string dims;
  for (int64_t n : shape) dims += std::to_string(n) + ", ";
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) return false;
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const uint16_t length = static_cast<uint16_t>(header.size());
  bool ok = std::fwrite(magic, 1, 8, out) == 8 && std::fwrite(&length, 2, 1, out) == 1 &&
            std::fwrite(header.data(), 1, header.size(), out) == header.size() &&
            std::fwrite(values, sizeof(T), count, out) == count;
  ok = std::fclose(out) == 0 && ok;
  return ok;
}

// A .npy file of int32 [rows, cols].
bool WriteNpyInt32(const std::string& path, const std::vector<int32_t>& values, int64_t rows, int64_t cols) {
  return WriteNpy(path, "<i4", values.data(), values.size(), {rows, cols});
}

bool ParseIds(const std::string& text, std::vector<llama_token>* ids) {
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    char* end = nullptr;
    const long value = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || value < 0 || value > 0x7fffffff) return false;
    ids->push_back(static_cast<llama_token>(value));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return !ids->empty();
}

int Logits(int argc, char** argv) {
  if (argc < 3) return Fail("usage: llama_oracle logits MODEL.gguf --ids 1,2,3 --out FILE");
  const std::string model_path = argv[2];
  std::vector<llama_token> ids;
  std::string out_path;
  std::string dump_dir;
  int threads = 2;
  ggml_type kv_type = GGML_TYPE_F32;
  for (int i = 3; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Fail("flag " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--ids") {
      if (!ParseIds(value, &ids)) return Fail("--ids: expected comma-separated token ids, got '" + value + "'");
    } else if (flag == "--out") {
      out_path = value;
    } else if (flag == "--dump-topk") {
      dump_dir = value;
    } else if (flag == "--threads") {
      threads = std::atoi(value.c_str());
      if (threads < 1) return Fail("--threads: expected a positive count");
    } else if (flag == "--kv") {
      if (value == "f32") kv_type = GGML_TYPE_F32;
      else if (value == "f16") kv_type = GGML_TYPE_F16;
      else return Fail("--kv: expected f32 or f16");
    } else {
      return Fail("unknown flag " + flag);
    }
  }
  if (ids.empty() || out_path.empty()) return Fail("logits needs --ids and --out");

  llama_model_params mparams = llama_model_default_params();
  mparams.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(model_path.c_str(), mparams);
  if (model == nullptr) return Fail("llama.cpp could not load " + model_path);
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  for (llama_token id : ids) {
    if (id >= n_vocab) return Fail("token id " + std::to_string(id) + " is not below the vocabulary size " + std::to_string(n_vocab));
  }

  llama_context_params cparams = llama_context_default_params();
  const uint32_t n = static_cast<uint32_t>(ids.size());
  cparams.n_ctx = n < 64 ? 64 : n;
  cparams.n_batch = cparams.n_ctx;
  cparams.n_ubatch = cparams.n_ctx;
  cparams.n_seq_max = 1;
  cparams.n_threads = threads;
  cparams.n_threads_batch = threads;
  cparams.type_k = kv_type;
  cparams.type_v = kv_type;
  cparams.no_perf = true;
  cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  if (!dump_dir.empty()) cparams.cb_eval = CaptureSelections;
  llama_context* ctx = llama_init_from_model(model, cparams);
  if (ctx == nullptr) return Fail("llama.cpp could not create a context for " + model_path);

  llama_batch batch = llama_batch_init(static_cast<int32_t>(n), 0, 1);
  for (uint32_t i = 0; i < n; ++i) {
    batch.token[i] = ids[i];
    batch.pos[i] = static_cast<llama_pos>(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = static_cast<int32_t>(n);
  const int32_t status = llama_decode(ctx, batch);
  if (status != 0) return Fail("llama_decode returned " + std::to_string(status));

  FILE* out = std::fopen(out_path.c_str(), "wb");
  if (out == nullptr) return Fail("cannot write " + out_path);
  for (uint32_t i = 0; i < n; ++i) {
    const float* row = llama_get_logits_ith(ctx, static_cast<int32_t>(i));
    if (row == nullptr) return Fail("no logits for position " + std::to_string(i));
    if (std::fwrite(row, sizeof(float), static_cast<size_t>(n_vocab), out) != static_cast<size_t>(n_vocab)) {
      std::fclose(out);
      return Fail("short write to " + out_path);
    }
  }
  if (std::fclose(out) != 0) return Fail("cannot write " + out_path);
  for (const auto& [name, captured] : g_captured) {
    const bool dsa = IsLayerTensor(name, "top_k");
    const std::string layer = name.substr(name.rfind('-') + 1);
    const std::string path = dump_dir + "/L" + layer + (dsa ? ".topk.npy" : ".router_experts.npy");
    if (captured.rows != static_cast<int64_t>(n)) {
      return Fail(name + " has " + std::to_string(captured.rows) + " rows, not one per id");
    }
    if (!WriteNpyInt32(path, captured.values, captured.rows, captured.k)) return Fail("cannot write " + path);
  }
  if (!dump_dir.empty() && g_captured.empty()) return Fail("--dump-topk: the graph has no selection tensors");
  std::printf("n_vocab %d\n", n_vocab);
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}

int Quantize(int argc, char** argv) {
  if (argc < 5) return Fail("usage: llama_oracle quantize IN.gguf OUT.gguf TYPE [--threads N]");
  const std::string type = argv[4];
  llama_model_quantize_params params = llama_model_quantize_default_params();
  bool found = false;
  for (const FileType& file_type : kFileTypes) {
    if (type == file_type.name) {
      params.ftype = file_type.ftype;
      found = true;
    }
  }
  if (!found) return Fail("unknown file type '" + type + "'");
  params.nthread = 2;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--threads") == 0) params.nthread = std::atoi(argv[i + 1]);
    else return Fail(std::string("unknown flag ") + argv[i]);
  }
  if (llama_model_quantize(argv[2], argv[3], &params) != 0) {
    return Fail(std::string("llama.cpp could not quantize ") + argv[2]);
  }
  return 0;
}

std::vector<std::string> SplitNames(const std::string& text) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    names.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return names;
}

// One tensor through ggml's decoder into DIR/<name>.npy ('/' in a name becomes '_').
bool DequantTensor(const ggml_tensor* t, const std::string& dir, std::string* error) {
  const int64_t n = ggml_nelements(t);
  std::vector<float> values(static_cast<size_t>(n));
  if (t->type == GGML_TYPE_F32) {
    std::memcpy(values.data(), t->data, values.size() * sizeof(float));
  } else {
    const ggml_type_traits* traits = ggml_get_type_traits(t->type);
    if (traits->to_float == nullptr) {
      *error = std::string("ggml has no decoder for ") + ggml_type_name(t->type) + " (tensor " + t->name + ")";
      return false;
    }
    traits->to_float(t->data, values.data(), n);
  }
  std::vector<int64_t> shape;
  for (int d = ggml_n_dims(t) - 1; d >= 0; --d) shape.push_back(t->ne[d]);
  std::string file = t->name;
  for (char& c : file) c = c == '/' ? '_' : c;
  if (!WriteNpy(dir + "/" + file + ".npy", "<f4", values.data(), values.size(), shape)) {
    *error = "cannot write " + dir + "/" + file + ".npy";
    return false;
  }
  std::printf("%s %s %lld\n", t->name, ggml_type_name(t->type), static_cast<long long>(n));
  return true;
}

int Dequant(int argc, char** argv) {
  if (argc < 3) return Fail("usage: llama_oracle dequant FILE.gguf --out DIR [--tensors a,b,...]");
  const std::string path = argv[2];
  std::string out_dir;
  std::vector<std::string> wanted;
  for (int i = 3; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Fail("flag " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--out") out_dir = value;
    else if (flag == "--tensors") wanted = SplitNames(value);
    else return Fail("unknown flag " + flag);
  }
  if (out_dir.empty()) return Fail("dequant needs --out");
  ggml_context* data = nullptr;
  gguf_init_params params = {/*no_alloc=*/false, /*ctx=*/&data};
  gguf_context* file = gguf_init_from_file(path.c_str(), params);
  if (file == nullptr) return Fail("ggml could not read " + path);
  std::vector<std::string> names = wanted;
  if (names.empty()) {
    for (int64_t i = 0; i < gguf_get_n_tensors(file); ++i) names.push_back(gguf_get_tensor_name(file, i));
  }
  int status = 0;
  for (const std::string& name : names) {
    const ggml_tensor* t = ggml_get_tensor(data, name.c_str());
    std::string error;
    if (t == nullptr) error = "no tensor '" + name + "' in " + path;
    if (t == nullptr || !DequantTensor(t, out_dir, &error)) {
      status = Fail(error);
      break;
    }
  }
  ggml_free(data);
  gguf_free(file);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  llama_log_set(LogCallback, nullptr);
  const char* backends = std::getenv("LLAMA_ORACLE_BACKENDS");
#ifdef LLAMA_ORACLE_LIB_DIR
  if (backends == nullptr) backends = LLAMA_ORACLE_LIB_DIR;  // where the CPU backend variants are
#endif
  if (backends != nullptr) {
    ggml_backend_load_all_from_path(backends);
  } else {
    ggml_backend_load_all();
  }
  llama_backend_init();
  if (argc < 2) return Fail("usage: llama_oracle logits|quantize|dequant ...");
  const std::string command = argv[1];
  int status = 1;
  if (command == "logits") status = Logits(argc, argv);
  else if (command == "quantize") status = Quantize(argc, argv);
  else if (command == "dequant") status = Dequant(argc, argv);
  else status = Fail("unknown command '" + command + "'");
  llama_backend_free();
  return status;
}
