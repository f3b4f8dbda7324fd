#!/usr/bin/env python3
"""Reference goldens from Hugging Face transformers for loom's model loader.

Developer-run only (CI never runs it; it needs PyTorch). Writes, for each tiny
random-weight model below, into tests/model/data/hf/<name>/:

  config.json, generation_config.json   as save_pretrained writes them
  model.safetensors                     (or model-0000k-of-0000n.safetensors +
                                        model.safetensors.index.json: sharded)
  logits.bin                            f32 little-endian logits of every
                                        position of every prompt
  golden.txt                            what the C test checks (format below)

Models (deterministic: fixed seeds, CPU, eager attention, float32 compute):

  llama_gqa    LlamaForCausalLM: hidden 64, 4 query heads / 2 KV heads (GQA),
               head_dim 16, ffn 128, 2 layers, vocab 256, rms_eps 1e-5,
               rope_theta 500000 with llama3 rope_scaling (factor 8, low 1,
               high 4, original_max_position_embeddings 64 so that all three
               llama3 frequency bands occur with head_dim 16), untied LM head,
               weights stored as F16, one file.
  mixtral_moe  MixtralForCausalLM: same attention dims, 8 experts top-2 with
               expert ffn 32 in every layer (loom's own configs alternate MoE
               and dense layers; Mixtral has MoE in every layer, moe_every=1),
               rope_theta 500000 without scaling, tied embeddings, weights
               stored as BF16, sharded (max_shard_size 150KB) so the index path
               is exercised on a real transformers output.

Weights are drawn so activations stay O(1) (linear: N(0, 1/fan_in), twice
that scale for o_proj/down_proj/w2 so the residual stream is not dominated by
the token embedding; embeddings N(0, 0.25); norm weights 1 + 0.1 N(0, 1)),
and rounded to the storage
dtype before anything is computed: the logits are those of the stored
checkpoint loaded back with from_pretrained(torch_dtype=float32), so loom,
converting F16/BF16 to f32 exactly, must reproduce them to f32 rounding.
Greedy continuations come from model.generate(do_sample=False,
max_new_tokens=8, eos_token_id=None) (no early stop), checked against a
no-cache argmax loop; golden.txt records the smallest top-1/top-2 logit gap
along each continuation, so a test can tell a real mismatch from a near tie.

Tested with (pip in a venv, Python 3.11.7, run on CPU):
    torch==2.5.1 (the PyPI wheel) transformers==4.46.3 safetensors==0.8.0 numpy==2.4.6
    pip install torch==2.5.1 transformers==4.46.3 safetensors==0.8.0 numpy==2.4.6
Other versions should give the same checkpoints (the weights come from
torch.randn with a fixed generator) but may differ in the last bits of the
logits; regenerate everything together.
Usage:
    python3 scripts/gen_hf_golden.py [--out tests/model/data/hf]

How transformers lays out q/k for RoPE (what loom's loader must know):
  q_proj.weight is [n_heads * head_dim, hidden] (nn.Linear, out x in); the
  output of head h is rows h*head_dim .. (h+1)*head_dim-1. apply_rotary_pos_emb
  uses rotate_half: within a head, dim i and dim i + head_dim/2 form the
  rotated pair, frequency inv_freq[i] = theta^(-2i/head_dim), i < head_dim/2:
      q'[i]         = q[i] cos - q[i + D/2] sin
      q'[i + D/2]   = q[i + D/2] cos + q[i] sin
  That is loom's LOOM_ROPE_NEOX on the weights as stored. llama.cpp's GGUF
  converter permutes q/k rows per head (row 2j <- row j, row 2j+1 <- row
  j + D/2) so that GGUF weights use adjacent pairs (LOOM_ROPE_NORMAL). k_proj
  is the same with n_kv_heads. See include/loom/safetensors.h for every tensor
  name and shape.

golden.txt (one record per line, '#' comments, fields separated by spaces):
  model NAME
  checkpoint PATH            file or index, relative to the model directory
  storage DTYPE              F16 or BF16
  cfg KEY VALUE...           dim, n_layers, n_heads, n_kv_heads, head_dim,
                             ffn_dim, vocab_size, rms_eps, rope_theta,
                             rope_scaling (none | llama3 factor low high orig),
                             max_ctx, tie, n_experts, n_experts_used,
                             expert_ffn_dim, bos_id, eos_id
  tensor NAME DTYPE D0 [D1 ...]   every tensor of the checkpoint, PyTorch shape
  prompt P T ID...           prompt P has T token ids
  logits P OFFSET T V MIN MAX   prompt P's [T, V] logits at float OFFSET of
                             logits.bin (row t = position t), with their range
  generated P N ID...        greedy continuation (N new tokens)
  margin P GAP               smallest top-1 minus top-2 logit over the
                             continuation's steps
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MixtralConfig,
                          MixtralForCausalLM)
from safetensors import safe_open

PROMPTS = [
    [1, 17, 200, 45, 3, 99, 128, 250],
    [1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 200, 31, 64, 77, 255, 0, 42, 100],
]
NEW_TOKENS = 8


def model_specs():
    common = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2,
                  rms_norm_eps=1e-5, rope_theta=500000.0,
                  max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                  hidden_act="silu", attention_dropout=0.0)
    llama = LlamaConfig(intermediate_size=128, head_dim=16,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                      "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 64},
                        tie_word_embeddings=False, attention_bias=False,
                        mlp_bias=False, **common)
    mixtral = MixtralConfig(intermediate_size=32, num_local_experts=8,
                            num_experts_per_tok=2, sliding_window=None,
                            router_jitter_noise=0.0, tie_word_embeddings=True,
                            **common)
    return [
        ("llama_gqa", LlamaForCausalLM, llama, torch.float16, None, 1234),
        ("mixtral_moe", MixtralForCausalLM, mixtral, torch.bfloat16, "150KB", 5678),
    ]


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:  # nn.Linear [out, in] (lm_head, projections, router, experts)
                # outputs into the residual stream count double, so that with
                # tied embeddings the next token is not just the current one
                gain = 2.0 if name.endswith(("o_proj.weight", "down_proj.weight",
                                             "w2.weight")) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def greedy_no_cache(model, ids, n):
    seq = list(ids)
    gaps = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(logits, 2).values
            gaps.append(float(top[0] - top[1]))
            seq.append(int(torch.argmax(logits)))
    return seq[len(ids):], min(gaps)


def fmt(x):
    return repr(float(x))


def generate(out_root, name, cls, cfg, store_dtype, shard, seed):
    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    torch.manual_seed(seed)
    model = cls(cfg)
    init_weights(model, seed)
    model = model.to(store_dtype)
    kw = {"safe_serialization": True}
    if shard:
        kw["max_shard_size"] = shard
    model.save_pretrained(d, **kw)

    # reload exactly what was stored, computing in float32
    ref = cls.from_pretrained(d, torch_dtype=torch.float32,
                              attn_implementation="eager").eval()
    lines = ["# written by scripts/gen_hf_golden.py (transformers %s, torch %s)"
             % (transformers.__version__, torch.__version__.split("+")[0]),
             "model " + name]
    index = os.path.join(d, "model.safetensors.index.json")
    ckpt = "model.safetensors.index.json" if os.path.exists(index) else "model.safetensors"
    lines.append("checkpoint " + ckpt)
    lines.append("storage " + {torch.float16: "F16", torch.bfloat16: "BF16"}[store_dtype])
    c = ref.config
    moe = isinstance(c, MixtralConfig)
    rs = getattr(c, "rope_scaling", None)
    cfgv = [
        ("dim", c.hidden_size), ("n_layers", c.num_hidden_layers),
        ("n_heads", c.num_attention_heads), ("n_kv_heads", c.num_key_value_heads),
        ("head_dim", c.hidden_size // c.num_attention_heads),
        ("ffn_dim", c.intermediate_size), ("vocab_size", c.vocab_size),
        ("rms_eps", fmt(c.rms_norm_eps)), ("rope_theta", fmt(c.rope_theta)),
        ("rope_scaling", "none" if not rs else "llama3 %s %s %s %d" % (
            fmt(rs["factor"]), fmt(rs["low_freq_factor"]), fmt(rs["high_freq_factor"]),
            rs["original_max_position_embeddings"])),
        ("max_ctx", c.max_position_embeddings), ("tie", int(c.tie_word_embeddings)),
        ("n_experts", c.num_local_experts if moe else 0),
        ("n_experts_used", c.num_experts_per_tok if moe else 0),
        ("expert_ffn_dim", c.intermediate_size if moe else 0),
        ("bos_id", c.bos_token_id), ("eos_id", c.eos_token_id),
    ]
    for k, v in cfgv:
        lines.append("cfg %s %s" % (k, v))

    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    for f in files:
        with safe_open(os.path.join(d, f), "pt") as sf:
            for t in sf.keys():
                sl = sf.get_slice(t)
                lines.append("tensor %s %s %s" % (t, sl.get_dtype(), " ".join(
                    str(x) for x in sl.get_shape())))

    blobs = []
    offset = 0
    with torch.no_grad():
        for p, ids in enumerate(PROMPTS):
            assert max(ids) < c.vocab_size
            logits = ref(torch.tensor([ids])).logits[0].float().numpy()  # [T, V]
            lines.append("prompt %d %d %s" % (p, len(ids), " ".join(map(str, ids))))
            lines.append("logits %d %d %d %d %s %s" % (p, offset, logits.shape[0],
                                                      logits.shape[1], fmt(logits.min()),
                                                      fmt(logits.max())))
            blobs.append(np.ascontiguousarray(logits, dtype="<f4").tobytes())
            offset += logits.size
            out = ref.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                                                             dtype=torch.long),
                               do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None,
                               pad_token_id=0, temperature=None, top_p=None, top_k=None)
            gen = [int(x) for x in out[0, len(ids):]]
            check, gap = greedy_no_cache(ref, ids, NEW_TOKENS)
            if gen != check:
                sys.exit("%s prompt %d: generate %s != argmax loop %s" % (name, p, gen, check))
            lines.append("generated %d %d %s" % (p, len(gen), " ".join(map(str, gen))))
            lines.append("margin %d %s" % (p, fmt(gap)))
            print("%s prompt %d: logits range [%.3f, %.3f], generated %s, min gap %.4f"
                  % (name, p, logits.min(), logits.max(), gen, gap))
    with open(os.path.join(d, "logits.bin"), "wb") as f:
        for b in blobs:
            f.write(b)
    with open(os.path.join(d, "golden.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print("%s: %d files, %d bytes" % (d, len(os.listdir(d)), size))
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "model", "data", "hf"))
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    total = 0
    for spec in model_specs():
        total += generate(os.path.normpath(a.out), *spec)
    print("total %d bytes" % total)
    if total > 1 << 20:
        sys.exit("goldens are %d bytes, over 1 MiB" % total)


if __name__ == "__main__":
    main()
