#!/usr/bin/env python3
"""Reference goldens from PyTorch + peft for loom's LoRA training (train/).

Developer-run only (CI has no torch). Reads the tiny transformers Llama of
tests/model/data/hf/llama_gqa (written by scripts/gen_hf_golden.py: 2 layers,
hidden 64, 4 query / 2 KV heads, head_dim 16, ffn 128, vocab 256, llama3 rope
scaling, F16 storage), loads it in float32, wraps it in a peft LoRA (r 4,
alpha 8, dropout 0, q/k/v/o/gate/up/down) whose A is peft's Kaiming-uniform
init and whose B is drawn non-zero (seeded; a fresh B = 0 would leave every A
gradient zero), and writes into tests/train/data/lora_golden/:

  adapter_config.json, adapter_model.safetensors   PeftModel.save_pretrained
  golden.safetensors   float32 tensors:
      logits             [T, V] of the prompt through base + adapter
      grad.<peft name>   d(loss)/d(param) of every lora_A / lora_B
      after.<peft name>  the params after two torch.optim.AdamW steps
                         (lr 1e-2, betas 0.9/0.999, eps 1e-8, weight decay
                         0.1), each on the same gradients clipped with
                         clip_grad_norm_(max_norm 0.5)
      lr_schedule        [11] get_cosine_schedule_with_warmup(warmup 3,
                         total 10) multipliers for steps 0..10
  golden.txt           tokens, targets (labels shifted: target of position t
                       is labels[t+1], -1 where ignored), loss, grad_norm,
                       and the hyper-parameters above

loss = transformers' causal-LM loss (mean cross-entropy over labels != -100)
with the first 4 labels masked (a "prompt"). peft names are the ones
PeftModel.save_pretrained writes:
base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...
q_proj/k_proj B rows (and their gradients) are in Hugging Face's order.

Tested with torch 2.15.0, transformers 5.25.0, peft 0.21.2, safetensors
(the /work/pyref venv). Usage: python3 scripts/gen_lora_golden.py
It also checks that peft loads the adapter loom writes (--check-loom DIR:
PeftModel.from_pretrained on DIR, then the logits loom's adapter gives).

--extra writes tests/train/data/lora_golden/extra.safetensors from the
committed adapter (the other files are left as they are):
  merged.logits        [T, V] after peft's merge_and_unload (loom merge-lora)
  merged.<HF weight>   the merged q_proj / k_proj of layer 0, down_proj of 1
  packed.loss          [1] transformers' loss on one packed sequence: the
                       documents PACK_DOCS end to end plus PACK_PAD padding
                       tokens, position_ids restarting per document and no
                       attention mask (transformers' packed-sequence
                       detection: attention within each document), labels
                       -100 on each document's first token and the padding
                       (DataCollatorWithFlattening's); the mean over the rest
  packed.grad.<name>   its gradient of every lora_A / lora_B (q/k B rows in
                       HF's order)
(loom: test_merge_lora, test_pack)

--autocast writes tests/train/data/lora_golden/autocast.safetensors from the
committed adapter (mixed precision, docs/adr/0041; loom: test_mixed_precision):
  bf16.loss, bf16.grad.<name>  the golden prompt's loss and LoRA gradients
                               with the forward under
                               torch.autocast("cpu", dtype=torch.bfloat16)
                               (f32 base and LoRA masters, backward outside)
  f16.loss, f16.grad.<name>    the same under float16, the backward from the
                               loss times 1024 (a GradScaler scale), the
                               gradients divided by it (GradScaler.unscale_)
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import peft
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaForCausalLM, get_cosine_schedule_with_warmup

TOKENS = [1, 17, 200, 45, 3, 99, 128, 250, 5, 6, 7, 8]
N_MASKED = 4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def base_model(root):
    d = os.path.join(root, "tests", "model", "data", "hf", "llama_gqa")
    return d, LlamaForCausalLM.from_pretrained(d, dtype=torch.float32,
                                               attn_implementation="eager").eval()


def generate(root):
    out = os.path.join(root, "tests", "train", "data", "lora_golden")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    src, base = base_model(root)
    torch.manual_seed(1234)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                     bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for n, p in sorted(model.named_parameters()):
            if "lora_B" in n:
                p.copy_(0.2 * (2 * torch.rand(p.shape, generator=g) - 1))
    model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # peft's model card template
    cj = os.path.join(out, "adapter_config.json")
    with open(cj) as f:
        c = json.load(f)
    c["base_model_name_or_path"] = "tests/model/data/hf/llama_gqa"  # not this machine's path
    with open(cj, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
    # the names as saved (no ".default")
    params = [(n.replace(".default", ""), p) for n, p in model.named_parameters()
              if p.requires_grad]
    ids = torch.tensor([TOKENS])
    labels = ids.clone()
    labels[0, :N_MASKED] = -100
    res = model(input_ids=ids, labels=labels)
    res.loss.backward()
    tensors = {"logits": res.logits[0].detach().float().contiguous()}
    for n, p in params:
        tensors["grad." + n] = p.grad.detach().clone().contiguous()
    # optimizer: two AdamW steps on the same clipped gradients
    plist = [p for _, p in params]
    grads = [p.grad.detach().clone() for p in plist]
    opt = torch.optim.AdamW(plist, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1,
                            foreach=False)
    norm = None
    for _ in range(2):
        for p, gr in zip(plist, grads):
            p.grad = gr.clone()
        n_ = torch.nn.utils.clip_grad_norm_(plist, 0.5, foreach=False)
        norm = float(n_) if norm is None else norm
        opt.step()
    for n, p in params:
        tensors["after." + n] = p.detach().clone().contiguous()
    sched_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sch = get_cosine_schedule_with_warmup(sched_opt, num_warmup_steps=3, num_training_steps=10)
    lrs = []
    for _ in range(11):
        lrs.append(sched_opt.param_groups[0]["lr"])
        sched_opt.step()
        sch.step()
    tensors["lr_schedule"] = torch.tensor(lrs, dtype=torch.float32)
    save_file(tensors, os.path.join(out, "golden.safetensors"))
    tg = [int(labels[0, t + 1]) if t + 1 < len(TOKENS) else -100 for t in range(len(TOKENS))]
    tg = [-1 if x == -100 else x for x in tg]
    lines = ["# written by scripts/gen_lora_golden.py (torch %s, transformers %s, peft %s)"
             % (torch.__version__.split("+")[0], transformers.__version__, peft.__version__),
             "tokens %d %s" % (len(TOKENS), " ".join(map(str, TOKENS))),
             "targets %d %s" % (len(tg), " ".join(map(str, tg))),
             "loss %r" % float(res.loss.detach()),
             "grad_norm %r" % norm,
             "lora r 4 alpha 8",
             "adamw lr 1e-2 beta1 0.9 beta2 0.999 eps 1e-8 weight_decay 0.1 clip 0.5 steps 2",
             "schedule warmup 3 total 10"]
    with open(os.path.join(out, "golden.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print("%s: loss %.6f, grad norm %.6f, %d params, %d bytes" % (out, float(res.loss), norm,
                                                                 len(params), size))


PACK_DOCS = [[1, 17, 200, 45, 3], [99, 128, 250, 5, 6, 7, 8], [9, 31, 64, 2]]
PACK_PAD = 4


def extra(root):
    out = os.path.join(root, "tests", "train", "data", "lora_golden")
    tensors = {}
    _, base = base_model(root)
    model = PeftModel.from_pretrained(base, out, is_trainable=True)
    # packed sequence
    ids, pos, labels = [], [], []
    for d in PACK_DOCS:
        ids += d
        pos += list(range(len(d)))
        labels += [-100] + d[1:]
    ids += [0] * PACK_PAD
    pos += list(range(PACK_PAD))
    labels += [-100] * PACK_PAD
    model.train()  # dropout is 0; gradients on
    res = model(input_ids=torch.tensor([ids]), position_ids=torch.tensor([pos]),
                labels=torch.tensor([labels]), use_cache=False)
    res.loss.backward()
    tensors["packed.loss"] = res.loss.detach().reshape(1).float()
    for n, p in model.named_parameters():
        if p.requires_grad:
            tensors["packed.grad." + n.replace(".default", "")] = p.grad.detach().clone()
    # the same tokens without position_ids (one causal sequence): must differ
    with torch.no_grad():
        plain = float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]),
                            use_cache=False).loss)
    # merged
    model.eval()
    merged = model.merge_and_unload()
    with torch.no_grad():
        tensors["merged.logits"] = merged(input_ids=torch.tensor([TOKENS])).logits[0].float()
    sd = merged.state_dict()
    for k in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
              "model.layers.1.mlp.down_proj.weight"]:
        tensors["merged." + k] = sd[k].detach().float().contiguous()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "extra.safetensors"))
    print("extra.safetensors: packed loss %.8f (one causal sequence: %.8f), %d tensors"
          % (float(tensors["packed.loss"]), plain, len(tensors)))


def autocast(root):
    out = os.path.join(root, "tests", "train", "data", "lora_golden")
    tensors = {}
    _, base = base_model(root)
    model = PeftModel.from_pretrained(base, out, is_trainable=True)
    model.train()  # dropout is 0; gradients on
    ids = torch.tensor([TOKENS])
    labels = ids.clone()
    labels[0, :N_MASKED] = -100
    params = [(n.replace(".default", ""), p) for n, p in model.named_parameters()
              if p.requires_grad]
    for name, dt, scale in (("bf16", torch.bfloat16, 1.0), ("f16", torch.float16, 1024.0)):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dt):
            res = model(input_ids=ids, labels=labels, use_cache=False)
        (res.loss.float() * scale).backward()
        tensors[name + ".loss"] = res.loss.detach().reshape(1).float()
        for n, p in params:
            tensors["%s.grad.%s" % (name, n)] = (p.grad.detach().float() / scale).contiguous()
        print("%s autocast: loss %.8f" % (name, float(res.loss)))
    save_file(tensors, os.path.join(out, "autocast.safetensors"))


def check_loom(root, adapter_dir):
    """peft loads loom's adapter; print its loss on the golden prompt."""
    _, base = base_model(root)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids = torch.tensor([TOKENS])
    labels = ids.clone()
    labels[0, :N_MASKED] = -100
    with torch.no_grad():
        loss = float(model(input_ids=ids, labels=labels).loss)
    n = sum(1 for k in model.state_dict() if "lora_" in k)
    print("peft loaded %s: %d lora tensors, loss %.6f" % (adapter_dir, n, loss))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-loom", metavar="DIR", help="load a loom-written adapter with peft")
    ap.add_argument("--autocast", action="store_true",
                    help="write autocast.safetensors (bf16 / f16 mixed-precision goldens) only")
    ap.add_argument("--extra", action="store_true",
                    help="write extra.safetensors (merge and packing goldens) only")
    a = ap.parse_args()
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if a.check_loom:
        check_loom(root, a.check_loom)
    elif a.extra:
        extra(root)
    elif a.autocast:
        autocast(root)
    else:
        generate(root)


if __name__ == "__main__":
    main()
