#!/usr/bin/env python3
"""Write the tokenizer.json twin of the SentencePiece test vocabulary and its
goldens (tests/model/test_tokenizer_spm_json.c):

  tests/model/data/spm/llama-spm.tokenizer.json.tar.xz
      tokenizer.json: what Hugging Face makes of llama-spm.vocab.gguf
      (transformers' GGUF loader -> tokenizers' BPE with byte_fallback,
      merges from the scores, Metaspace prepend_scheme "first"), as
      tokenizers serializes it (Tokenizer.to_str()); xz because it is 1.6 MB
  tests/model/data/spm/llama-spm.json-variants.golden.txt
      ids of the corpus under two variants of that file, made by replacing
      one exact substring (the C test makes them the same way):
        legacy:  "normalizer": Sequence[Prepend("▁"), Replace(" ", "▁")],
                 no pre_tokenizer (the Llama 2 / Mistral 7B v0.1 files)
        always:  Metaspace prepend_scheme "always"
The "first" variant is the file itself; its ids must equal
llama-spm.golden.txt (checked here; the C test reads that file).

Developer-run (transformers + tokenizers + gguf, e.g. /work/pyref/bin/python).
"""
import io
import os
import sys
import tarfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gen_spm_golden import SPM_CORPUS  # noqa: E402
from gen_tokenizer_golden import CORPUS, REAL_CORPUS  # noqa: E402

META = '"normalizer":null,"pre_tokenizer":{"type":"Metaspace","replacement":"\u2581",' \
       '"prepend_scheme":"first","split":false}'
VARIANTS = {
    "legacy": '"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":'
              '"\u2581"},{"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]},'
              '"pre_tokenizer":null',
    "always": META.replace('"first"', '"always"'),
}


def main():
    from transformers import AutoTokenizer
    from tokenizers import Tokenizer
    import tokenizers
    d = os.path.join(ROOT, "tests", "model", "data", "spm")
    hf = AutoTokenizer.from_pretrained(d, gguf_file="llama-spm.vocab.gguf")
    text = hf.backend_tokenizer.to_str()
    assert text.count(META) == 1, "tokenizers serialized the pre-tokenizer differently"
    first = Tokenizer.from_str(text)
    # the "first" variant is what gen_spm_golden.py encoded: same ids
    golden = {}
    with open(os.path.join(d, "llama-spm.golden.txt"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("case "):
                parts = line.split()
                golden[parts[1]] = (bytes.fromhex(parts[2]) if parts[2] != "-" else b"",
                                    [int(x) for x in parts[3:]])
    for name, (raw, ids) in golden.items():
        got = first.encode(raw.decode("utf-8"), add_special_tokens=False).ids
        assert got == ids, "first variant differs from llama-spm.golden.txt on %s" % name
    corpus = SPM_CORPUS + [("real_" + n, t) for n, t in REAL_CORPUS] + [
        ("llama3_" + n, t) for n, t in CORPUS if isinstance(t, str) and "\0" not in t][:20]
    lines = ["# llama-spm tokenizer.json variants: tokenizers %s, scripts/gen_spm_json_golden.py"
             % tokenizers.__version__]
    for v, repl in VARIANTS.items():
        tok = Tokenizer.from_str(text.replace(META, repl))
        for name, s in corpus:
            ids = tok.encode(s, add_special_tokens=False).ids
            lines.append("case %s:%s %s %s" % (v, name, s.encode().hex() or "-",
                                                " ".join(map(str, ids))))
    out = os.path.join(d, "llama-spm.json-variants.golden.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    data = text.encode()
    tar = os.path.join(d, "llama-spm.tokenizer.json.tar.xz")
    with tarfile.open(tar, "w:xz", preset=9) as t:
        info = tarfile.TarInfo("tokenizer.json")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        t.addfile(info, io.BytesIO(data))
    print("wrote %s (%d cases) and %s (%d bytes)" % (os.path.relpath(out, ROOT), len(lines) - 1,
                                                     os.path.relpath(tar, ROOT),
                                                     os.path.getsize(tar)))


if __name__ == "__main__":
    sys.exit(main())
