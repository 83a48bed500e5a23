// Encode throughput of Hugging Face's own tokenizer (the Rust `tokenizers` core through its
// official node binding) on a corpus, measured like `dsinfer bench tokenizer`: one warm-up pass,
// then the best of N timed passes, single-threaded (RAYON_NUM_THREADS=1 is set by the driver;
// one `encodeBatch` call per pass so the per-call async overhead of the binding is amortised —
// the most favourable way to call it).
// Usage: node bench/tokenizer_hf.mjs TOKENIZER_JSON CORPUS_JSONL [REPS]
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.join(here, '../tools/npm/node_modules/tokenizers'));

const [tokPath, corpusPath, repsArg] = process.argv.slice(2);
const reps = Number(repsArg || 3);
const tok = Tokenizer.fromFile(tokPath);
const corpus = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const bytes = corpus.reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
let best = Infinity;
let tokens = 0;
for (let r = 0; r <= reps; r++) {
  const t0 = process.hrtime.bigint();
  const encs = await tok.encodeBatch(corpus, { addSpecialTokens: false });
  const t = Number(process.hrtime.bigint() - t0) / 1e9;
  tokens = encs.reduce((n, e) => n + e.getIds().length, 0);
  if (r > 0) best = Math.min(best, t);
}
console.log(JSON.stringify({ bench: 'tokenizer', impl: 'hf-tokenizers-node', lines: corpus.length, bytes, tokens, seconds: best, mb_per_s: bytes / best / 1e6 }));
