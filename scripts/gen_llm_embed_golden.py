#!/usr/bin/env python3
"""Reference embeddings from Hugging Face transformers for loom_model_embed.

Developer-run only (CI never runs it; it needs PyTorch). For each tiny
random-weight checkpoint that scripts/gen_hf_golden.py wrote under
tests/model/data/hf/<name>/ (llama_gqa, mixtral_moe), loads it with
from_pretrained(torch_dtype=float32, attn_implementation="eager") and writes
tests/model/data/hf/<name>/embed.txt: for each token sequence below, the
decoder's last_hidden_state (the base model's output: after the final
RMSNorm, before the LM head) mean-pooled over every token and L2-normalised
-- what llama.cpp's `--embedding --pooling mean` returns, and what loom's
`POST /v1/embeddings` serves when no --embed-model is given.

The sequences are token ids (the checkpoints have no tokenizer): one token,
short ones, and one of 100 tokens, past the llama3 rope scaling's
original_max_position_embeddings (64), so every frequency band matters.

embed.txt (one record per line, '#' comments, fields separated by spaces):
  embed E T ID...      sequence E has T token ids
  vec E D V...         its pooled, normalised embedding (D floats, repr)

Tested with (the project's /work/pyref venv): torch 2.15.0, transformers 5.25.0.
Other versions may differ in the last bits; the C test allows cosine >= 0.9999.
Usage:
    python3 scripts/gen_llm_embed_golden.py [--dir tests/model/data/hf]
"""
import argparse
import os

import torch
import transformers
from transformers import AutoModelForCausalLM

NAMES = ["llama_gqa", "mixtral_moe"]
SEQS = [
    [1],
    [1, 17, 200, 45],
    [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 200, 31, 64, 77, 255, 0, 42, 100],
    [1] + [(37 * i + 11) % 256 for i in range(99)],
]


def pooled(model, ids):
    with torch.no_grad():
        # the base model (LlamaModel / MixtralModel) of the *ForCausalLM
        h = model.model(torch.tensor([ids])).last_hidden_state[0]  # [T, D]
    v = h.double().mean(dim=0)
    return v / v.norm()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--dir", default=os.path.join(here, "..", "tests", "model", "data", "hf"))
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name in NAMES:
        d = os.path.normpath(os.path.join(a.dir, name))
        model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                                     attn_implementation="eager").eval()
        lines = ["# written by scripts/gen_llm_embed_golden.py (transformers %s, torch %s)"
                 % (transformers.__version__, torch.__version__.split("+")[0])]
        for e, ids in enumerate(SEQS):
            assert max(ids) < model.config.vocab_size
            v = pooled(model, ids)
            lines.append("embed %d %d %s" % (e, len(ids), " ".join(map(str, ids))))
            lines.append("vec %d %d %s" % (e, v.numel(),
                                           " ".join(repr(float(x)) for x in v.float())))
            # the pooling is over every token: the last token's state alone differs
            with torch.no_grad():
                last = model.model(torch.tensor([ids])).last_hidden_state[0, -1].double()
            print("%s seq %d: %d tokens, cos(mean, last token) %.4f"
                  % (name, e, len(ids), float(v @ last / last.norm())))
        with open(os.path.join(d, "embed.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
