// Tokenizes train.jsonl with Hugging Face's own tokenizer (the `tokenizers` node binding in
// tools/npm): node encode.mjs TOKDIR IN.jsonl OUT.bin OUT_LENGTHS.bin
// OUT.bin: uint16 ids of every document's "text", concatenated (ids of HF
// `encode(text, add_special_tokens=False)`: each document carries its own BOS/EOS strings).
// OUT_LENGTHS.bin: uint32 token count of each document, in order. data.py calls this.
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { Tokenizer } = require(path.join(here, '../npm/node_modules/tokenizers'));

const [tokDir, inPath, outPath, lengthsPath] = process.argv.slice(2);
if (!lengthsPath) {
  console.error('usage: node encode.mjs TOKDIR IN.jsonl OUT.bin OUT_LENGTHS.bin');
  process.exit(2);
}
const tok = Tokenizer.fromFile(path.join(tokDir, 'tokenizer.json'));
if (tok.getVocabSize(true) > 65536) {
  console.error(`encode.mjs: ${tokDir}: ${tok.getVocabSize(true)} ids do not fit in uint16`);
  process.exit(1);
}
const texts = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l)
  .map((l) => JSON.parse(l).text);
const out = fs.openSync(outPath, 'w');
const lengths = new Uint32Array(texts.length);
const batch = 512;
for (let i = 0; i < texts.length; i += batch) {
  const encs = await tok.encodeBatch(texts.slice(i, i + batch), { addSpecialTokens: false });
  let n = 0;
  for (const e of encs) n += e.getIds().length;
  const ids = new Uint16Array(n);
  let at = 0;
  encs.forEach((e, j) => {
    const d = e.getIds();
    ids.set(d, at);
    at += d.length;
    lengths[i + j] = d.length;
  });
  fs.writeSync(out, Buffer.from(ids.buffer));
}
fs.closeSync(out);
fs.writeFileSync(lengthsPath, Buffer.from(lengths.buffer));
