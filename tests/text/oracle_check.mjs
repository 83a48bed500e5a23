// Live check of `dsinfer tokenize --lines` / `dsinfer detokenize --lines` against HF's own
// tokenizer (`tokenizers` node binding): a sample of the golden corpus plus fresh random
// strings that are not in the golden file; and decoding of random id lists (invalid UTF-8
// byte soup included) against HF `decode`. Usage: node oracle_check.mjs path/to/dsinfer
import fs from 'fs';
import os from 'os';
import path from 'path';
import { execFileSync } from 'child_process';
import { fileURLToPath } from 'url';
import { loadOracles, v32TokenizerJson } from './oracle_lib.mjs';

const dsinfer = process.argv[2];
const here = path.dirname(fileURLToPath(import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsinfer-oracle-'));
const { json, config } = v32TokenizerJson();
fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));

let seed = 20251123;
const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296);
function randomText() {
  const pieces = ['<think>', '</think>', '<｜User｜>', ' ', '  ', '\t', '\u00A0', '\u3000', '\u0085',
    '\u180E', '\u200B', '123', '4567', 'abc', 'Hello', '中文', 'カナ', '한국', '😀', '👍🏽', '.', '!?', "'s"];
  let s = '';
  const n = 1 + Math.floor(rand() * 12);
  for (let i = 0; i < n; i++) {
    if (rand() < 0.5) {
      s += pieces[Math.floor(rand() * pieces.length)];
    } else {
      let c = Math.floor(rand() * (rand() < 0.7 ? 0x3000 : 0x110000));
      if ((c >= 0xD800 && c <= 0xDFFF) || c === 0x0A) c = 0x20;
      s += String.fromCodePoint(c);
    }
  }
  return s;
}

const corpus = fs.readFileSync(path.join(here, 'golden/corpus.jsonl'), 'utf8')
  .split('\n').filter((l) => l).map((l) => JSON.parse(l));
const texts = corpus.filter((t, i) => i % 3 === 0 && !t.includes('\n'));
for (let i = 0; i < 1000; i++) texts.push(randomText());

const { hf } = loadOracles();
const want = [];
for (const t of texts) want.push((await hf.encode(t, null, { addSpecialTokens: false })).getIds());

const input = texts.join('\n') + '\n';
const opts = { input, maxBuffer: 1 << 28, encoding: 'utf8' };
const got = execFileSync(dsinfer, ['tokenize', '--model', dir, '--lines'], opts).split('\n');
let agree = 0;
const bad = [];
for (let i = 0; i < texts.length; i++) {
  if (got[i] === JSON.stringify(want[i])) agree++;
  else if (bad.length < 5) bad.push({ text: texts[i], oracle: want[i], dsinfer: got[i] });
}
const decoded = execFileSync(dsinfer, ['detokenize', '--model', dir, '--lines'],
  { ...opts, input: want.map((ids) => JSON.stringify(ids)).join('\n') + '\n' }).split('\n');
let roundTrips = 0;
for (let i = 0; i < texts.length; i++) if (decoded[i] === texts[i]) roundTrips++;
// Decoding arbitrary id sequences (byte soup, invalid UTF-8 included) against HF's decode.
const vocabSize = hf.getVocabSize(true);
const byteIds = [];  // single-character vocab tokens of bytes 0x80..0xFF (lone UTF-8 pieces)
for (let id = 0; id < 128000 && byteIds.length < 128; id++) {
  const t = hf.idToToken(id);
  if ([...t].length === 1 && t.codePointAt(0) >= 0xA1) byteIds.push(id);
}
const idLists = [];
const hfTexts = [];
while (idLists.length < 1000) {
  const ids = Array.from({ length: 1 + Math.floor(rand() * 10) }, () =>
    rand() < 0.05 ? vocabSize + Math.floor(rand() * 465)  // unknown ids: skipped
      : rand() < 0.5 ? byteIds[Math.floor(rand() * byteIds.length)] : Math.floor(rand() * vocabSize));
  const text = await hf.decode(ids, false);
  if (text.includes('\n')) continue;  // one output line per id list
  idLists.push(ids);
  hfTexts.push(text);
}
const soup = execFileSync(dsinfer, ['detokenize', '--model', dir, '--lines'],
  { ...opts, input: idLists.map((ids) => JSON.stringify(ids)).join('\n') + '\n' }).split('\n');
let soupAgree = 0;
for (let i = 0; i < idLists.length; i++) {
  if (soup[i] === hfTexts[i]) soupAgree++;
  else if (bad.length < 5) bad.push({ ids: idLists[i], oracle: hfTexts[i], dsinfer: soup[i] });
}
fs.rmSync(dir, { recursive: true });

console.log(`tokenize: ${agree} / ${texts.length} lines equal to HF tokenizers`);
console.log(`detokenize: ${roundTrips} / ${texts.length} lines decode back to the text`);
console.log(`detokenize: ${soupAgree} / ${idLists.length} random id lists equal to HF decode`);
for (const b of bad) console.log('MISMATCH', JSON.stringify(b));
if (agree !== texts.length || roundTrips !== texts.length || soupAgree !== idLists.length) process.exit(1);
