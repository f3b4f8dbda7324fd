#!/usr/bin/env python3
"""Goldens for loom's sentence encoders (docs/adr/0027-sentence-encoders.md).

Run by a developer (needs torch, transformers, tokenizers, sentence-transformers,
safetensors; CI has none of them) with the all-MiniLM-L6-v2 directory that
scripts/fetch-models.sh unpacks:

    /work/pyref/bin/python scripts/gen_encoder_golden.py [MINILM_DIR]

Writes tests/golden/encoder/:
  tiny-bert/        a random BertModel (2 layers, 32-d, 4 heads) with a
                    1,000-token subset of MiniLM's vocabulary, saved by
                    transformers (config.json, model.safetensors) plus
                    tokenizer.json and sentence_bert_config.json (max 24 tokens,
                    so truncation is exercised); a few hundred KB.
  tok_tiny.bin      HF tokenizers' ids of every CORPUS text with the tiny
  tok_minilm.bin    tokenizer / MiniLM's (max_length 256), with truncation.
  emb_tiny.bin      embeddings of CORPUS by the tiny model: mean pooling over
                    the attention mask in PyTorch, then L2 normalisation
                    (sentence-transformers' Pooling + Normalize, written out).
  emb_minilm.bin    SentenceTransformer(MINILM_DIR).encode(SENTENCES): the real
                    model's embeddings of SENTENCES.
  tiny-mpnet/, tok_tiny_mpnet.bin, emb_tiny_mpnet.bin
                    the same for a random MPNetModel (2 layers, 32-d, max 36
                    tokens) with a cut of all-mpnet-base-v2's vocabulary;
  tok_mpnet.bin, emb_mpnet.bin
                    all-mpnet-base-v2 (next to MINILM_DIR, from
                    `scripts/fetch-models.sh mpnet`), as for MiniLM.
Formats (little-endian): tok_*.bin: u32 count, then per text u32 byte length,
the UTF-8 bytes, u32 n, n x i32 ids. emb_*.bin: u32 count, u32 dim, count x
dim f32.
"""
import json
import os
import random
import shutil
import struct
import sys

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "encoder")

CORPUS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "   ",
    "CAFÉ naïve résumé Ångström façade coöperate",
    "Straße İstanbul ǅemal ΣΊΣΥΦΟΣ",
    "Ελληνικά: Η γρήγορη καφέ αλεπού",
    "Русский текст: съешь же ещё этих мягких французских булок.",
    "العربية: مرحبا بالعالم",
    "עברית: שלום עולם",
    "हिन्दी: नमस्ते दुनिया",
    "ภาษาไทย สวัสดีชาวโลก",
    "日本語のテキスト：東京タワーは333メートルです。",
    "中文句子：我爱自然语言处理。",
    "한국어 문장: 안녕하세요 세계",
    "emoji 😀 🎉 🥰 🫠 👍🏽 ❤️ flags 🇫🇷",
    "def f(x):\n\treturn x**2 + 1  # square\n",
    "if (a != b && c <= d) { printf(\"%d\\n\", a[i]); }",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic\u2028line sep",
    "zero\u200bwidth soft\u00adhyphen bell\x07 nul\x00 del\x7f",
    "digits 3.14159 1,000,000 2026-12-06 0x1F 1e-12 ½ ²",
    "U.S.A. don't won't it's e.g. i.e. Mr. O'Neil",
    "e\u0301 combining and precomposed é",
    "Ｆｕｌｌｗｉｄｔｈ ｆｏｒｍｓ and ﬁ ligature",
    "special tokens in text: [SEP] [CLS] [MASK] [unk] [PAD]x",
    "https://example.com/path?query=1&b=2#frag user@example.org",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 120 + " long word",
    "$5 €10 £20 ¥30 ₹40 100% +-*/=<>^`|~",
    "«guillemets» „quotes“ ‘single’ — dash – en… ellipsis",
    "mixed ΑΒΓ abc АБВ 123 漢字 かな カナ",
    " ".join(["repeat"] * 300),
]

# Sentences for the real-model golden: ordinary retrieval-style text.
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "How do I install Python packages with pip?",
    "The Eiffel Tower is 330 metres tall and stands in Paris.",
    "Vector databases index embeddings for nearest-neighbour search.",
    "def add(a, b): return a + b",
    "Das Wetter ist heute schön.",
    "Le café est très chaud.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "",
    "This sentence is rather long, and it keeps going with several clauses, commas, "
    "numbers like 42 and 3.5, and a final question: does truncation matter here?",
    "🙂 emoji only 🎉",
]


def write_tok(path, tok, texts):
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(texts)))
        for t in texts:
            b = t.encode("utf-8")
            ids = tok.encode(t).ids
            f.write(struct.pack("<I", len(b)))
            f.write(b)
            f.write(struct.pack("<I", len(ids)))
            f.write(struct.pack("<%di" % len(ids), *ids))


def write_emb(path, emb):
    emb = np.asarray(emb, dtype=np.float32)
    with open(path, "wb") as f:
        f.write(struct.pack("<II", emb.shape[0], emb.shape[1]))
        f.write(emb.tobytes())


def tiny_tokenizer(src_dir, out_dir):
    """A model's tokenizer.json with a vocabulary cut to the specials, the
    corpus's tokens and random others (so some words fall to [UNK])."""
    tj = json.load(open(os.path.join(src_dir, "tokenizer.json")))
    full = Tokenizer.from_file(os.path.join(src_dir, "tokenizer.json"))
    full.no_truncation()
    full.no_padding()
    vocab = tj["model"]["vocab"]
    inv = {i: t for t, i in vocab.items()}
    # BERT: [PAD], [unused..], [UNK], [CLS], [SEP], [MASK]; MPNet: <s> <pad> </s> <unk> ... [UNK]
    specials = set(range(0, 106)) | {a["id"] for a in tj["added_tokens"]}
    keep = set(specials)
    for t in CORPUS[:20]:
        keep.update(full.encode(t).ids)
    rng = random.Random(1234)
    keep.update(rng.sample(range(106, len(vocab)), 700))
    keep = sorted(specials | set(sorted(keep - specials)[:1000 - len(specials)]))
    remap = {old: new for new, old in enumerate(keep)}
    tj["model"]["vocab"] = {inv[old]: new for old, new in remap.items()}
    for a in tj["added_tokens"]:
        a["id"] = remap[a["id"]]
    pp = tj["post_processor"]
    if pp["type"] == "TemplateProcessing":
        for name, st in pp["special_tokens"].items():
            st["ids"] = [remap[i] for i in st["ids"]]
    else:  # RobertaProcessing (MPNet)
        pp["cls"][1], pp["sep"][1] = remap[pp["cls"][1]], remap[pp["sep"][1]]
    tj["truncation"] = None
    tj["padding"] = None
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    return len(keep)


def embed_mean_norm(model, tok, texts, max_len, pad_id=0):
    """sentence-transformers' Transformer + Pooling(mean) + Normalize, written out."""
    tok.enable_truncation(max_len)
    encs = [tok.encode(t) for t in texts]
    T = max(len(e.ids) for e in encs)
    ids = torch.full((len(texts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(texts), T), dtype=torch.long)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = 1
    with torch.no_grad():
        kw = {} if "MPNet" in type(model).__name__ else {"token_type_ids": torch.zeros_like(ids)}
        h = model(input_ids=ids, attention_mask=mask, **kw)[0]
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        return torch.nn.functional.normalize(mean, p=2, dim=1).numpy()


def main():
    minilm = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/loom/models/all-MiniLM-L6-v2")
    os.makedirs(OUT, exist_ok=True)
    tiny_dir = os.path.join(OUT, "tiny-bert")
    if os.path.isdir(tiny_dir):
        shutil.rmtree(tiny_dir)
    V = tiny_tokenizer(minilm, tiny_dir)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                     hidden_act="gelu", layer_norm_eps=1e-12,
                     # large weights, so attention, masking and GELU change the result a lot
                     initializer_range=0.3)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    # Non-trivial LayerNorm affine parameters and biases (init gives 1 and 0).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(tiny_dir, safe_serialization=True)
    with open(os.path.join(tiny_dir, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 24, "do_lower_case": False}, f)

    tiny_tok = Tokenizer.from_file(os.path.join(tiny_dir, "tokenizer.json"))
    tiny_tok.enable_truncation(24)
    write_tok(os.path.join(OUT, "tok_tiny.bin"), tiny_tok, CORPUS)
    write_emb(os.path.join(OUT, "emb_tiny.bin"), embed_mean_norm(model, tiny_tok, CORPUS, 24))

    mtok = Tokenizer.from_file(os.path.join(minilm, "tokenizer.json"))
    mtok.no_padding()
    mtok.enable_truncation(256)  # sentence_bert_config.json max_seq_length
    write_tok(os.path.join(OUT, "tok_minilm.bin"), mtok, CORPUS)

    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(minilm, device="cpu")
    assert st.max_seq_length == 256
    write_emb(os.path.join(OUT, "emb_minilm.bin"),
              st.encode(SENTENCES, batch_size=32, convert_to_numpy=True))
    with open(os.path.join(OUT, "sentences.txt"), "w", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in SENTENCES))

    # MPNet: a tiny random MPNetModel with a cut of all-mpnet-base-v2's vocabulary
    # (relative-position bias, positions from 2, <s>/</s>), and the real model.
    from transformers import MPNetConfig, MPNetModel
    mpnet = os.path.join(os.path.dirname(minilm), "all-mpnet-base-v2")
    tdir = os.path.join(OUT, "tiny-mpnet")
    if os.path.isdir(tdir):
        shutil.rmtree(tdir)
    V = tiny_tokenizer(mpnet, tdir)
    torch.manual_seed(1)
    mcfg = MPNetConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=40,
                       relative_attention_num_buckets=32, hidden_act="gelu",
                       layer_norm_eps=1e-5, initializer_range=0.3, pad_token_id=1)
    mm = MPNetModel(mcfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for name, p in mm.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
        # buckets carry large, distinct biases so a wrong bucket shows
        mm.encoder.relative_attention_bias.weight.normal_(0, 2.0)
    mm.save_pretrained(tdir, safe_serialization=True)
    with open(os.path.join(tdir, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 36, "do_lower_case": False}, f)
    ttok = Tokenizer.from_file(os.path.join(tdir, "tokenizer.json"))
    ttok.enable_truncation(36)
    write_tok(os.path.join(OUT, "tok_tiny_mpnet.bin"), ttok, CORPUS)
    write_emb(os.path.join(OUT, "emb_tiny_mpnet.bin"),
              embed_mean_norm(mm, ttok, CORPUS, 36, pad_id=ttok.token_to_id("<pad>")))
    if os.path.isfile(os.path.join(mpnet, "model.safetensors")):
        ptok = Tokenizer.from_file(os.path.join(mpnet, "tokenizer.json"))
        ptok.no_padding()
        ptok.enable_truncation(384)
        write_tok(os.path.join(OUT, "tok_mpnet.bin"), ptok, CORPUS)
        stm = SentenceTransformer(mpnet, device="cpu")
        assert stm.max_seq_length == 384
        write_emb(os.path.join(OUT, "emb_mpnet.bin"),
                  stm.encode(SENTENCES, batch_size=32, convert_to_numpy=True))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
