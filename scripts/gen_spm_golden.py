#!/usr/bin/env python3
"""Write tests/model/data/spm/llama-spm.golden.txt: token ids of a varied corpus
under the SentencePiece (tokenizer.ggml.model = llama) vocabulary in
tests/model/data/spm/llama-spm.vocab.gguf, as Hugging Face computes them:
transformers loads the GGUF (AutoTokenizer.from_pretrained(..., gguf_file=...):
BPE with byte_fallback, merges derived from the scores, Metaspace
pre-tokenizer) and `tokenizers` encodes with add_special_tokens=False.

Developer-run (transformers + tokenizers + gguf, e.g. /work/pyref/bin/python);
the output is committed and read by tests/model/test_tokenizer_spm.c.

Line format (hex strings: no escaping questions):
  case NAME HEXTEXT id id ...      ("-" for an empty text)
  decoded HEXTEXT                   tokenizer.decode(ids) (leading space stripped)
"""
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gen_tokenizer_golden import CORPUS, REAL_CORPUS  # noqa: E402

SPM_CORPUS = [
    ("leading_space", " Hello world"),
    ("leading_spaces", "   three leading"),
    ("only_spaces", "     "),
    ("newline_first", "\nfirst line"),
    ("metaspace_literal", "a\u2581b \u2581\u2581c \u2581start"),
    ("metaspace_first", "\u2581lead and \u2581 more"),
    ("special_inside", "Hello<s>world</s> <unk> tail"),
    ("special_first", "<s>Hello world"),
    ("special_spaces", "  <s>  x </s>"),
    ("byte_fallback_cjk", "\u9f98\u9f8d\u9f96 \u3402\u4dbf \U00020000"),
    ("emoji", "\U0001f600\U0001f469\u200d\U0001f4bb \U0001f1eb\U0001f1f7 \u2764\ufe0f \U0001f999"),
    ("scripts", "\u0645\u0631\u062d\u0628\u0627 \u0928\u092e\u0938\u094d\u0924\u0947 "
                "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u05e9\u05dc\u05d5\u05dd "
                "\u1f08\u03b8\u03ae\u03bd\u03b1 \ud55c\uad6d\uc5b4"),
    ("combining", "e\u0301 a\u0308 n\u0303 \u1e9b\u0323"),
    ("tabs_runs", "a\t\tb\n\n\nc  \t  d\r\ne"),
    ("digits", "0 00 007 1234567890 3.14 -1e-10 \u0661\u0662 \u2460"),
    ("code", "for (int i = 0; i < n; ++i) {\n    sum += a[i] * b[i];\n}\n"),
    ("json", "{\"key\": [1, 2, {\"nested\": null}], \"s\": \"\\u00e9\"}"),
    ("url", "https://example.com/path?q=a+b&x=%20#frag"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("control_chars", "a\x01b\x07c\x1bd\x7f"),
]


def llama_cpp_inputs():
    """The strings of llama.cpp's tokenizer test (ggml-vocab-*.gguf.inp), when given."""
    p = os.environ.get("LLAMA_VOCAB_INP")
    if not p:
        return []
    with open(p, encoding="utf-8") as f:
        parts = f.read().split("\n__ggml_vocab_test__\n")
    return [("llamacpp_%d" % i, s) for i, s in enumerate(parts) if s and "\0" not in s]


def main():
    from transformers import AutoTokenizer
    import tokenizers
    d = os.path.join(ROOT, "tests", "model", "data", "spm")
    tok = AutoTokenizer.from_pretrained(d, gguf_file="llama-spm.vocab.gguf")
    corpus = (SPM_CORPUS + [("real_" + n, t) for n, t in REAL_CORPUS]
              + [("llama3_" + n, t) for n, t in CORPUS if isinstance(t, str) and "\0" not in t] + llama_cpp_inputs())
    lines = ["# llama-spm (Llama 2 SentencePiece vocabulary): transformers via GGUF, "
             "tokenizers %s, scripts/gen_spm_golden.py" % tokenizers.__version__]
    for name, text in corpus:
        ids = tok.encode(text, add_special_tokens=False)
        lines.append("case %s %s %s" % (name, text.encode().hex() or "-", " ".join(map(str, ids))))
        lines.append("decoded %s" % (tok.decode(ids).encode().hex() or "-"))
    out = os.path.join(d, "llama-spm.golden.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d cases" % (os.path.relpath(out, ROOT), len(corpus)))


if __name__ == "__main__":
    sys.exit(main())
