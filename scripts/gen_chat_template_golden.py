#!/usr/bin/env python3
"""Write tests/model/data/chat_template_golden.txt: conversations rendered with
real chat templates exactly as transformers' apply_chat_template renders them
(its own render_jinja_template: jinja2's ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks and raise_exception), for
tests/model/test_chat_template.c, which compares loom's C rendering byte for
byte. Also prints each template's FNV-1a 64 fingerprint, the key of the table
in model/tokenizer/tokenizer_chat.c.

Developer-run (needs transformers + jinja2, e.g. /work/pyref/bin/python);
the output is committed. The template texts are the ones the models ship in
tokenizer_config.json / GGUF tokenizer.chat_template:
  smollm2  HuggingFaceTB/SmolLM2-135M-Instruct (read from the GGUF when given
           with --smollm2-gguf, else the text below, which is identical)
  llama3   meta-llama/Meta-Llama-3-8B-Instruct, first release (the generation
           prompt appended unconditionally) and the later add_generation_prompt
           revision
  chatml   teknium/OpenHermes-2.5-Mistral-7B
  mistral  mistralai/Mistral-7B-Instruct-v0.1
  llama2   meta-llama/Llama-2-7b-chat-hf
  zephyr   HuggingFaceH4/zephyr-7b-beta

Format (bytes are exact, lengths in bytes):
  template NAME FINGERPRINT_HEX BOS_LEN EOS_LEN TEXT_LEN\\n BOS EOS TEXT \\n
  case NAME ADD_GEN N_MESSAGES ok|error\\n
    msg ROLE CONTENT_LEN\\n CONTENT \\n        (N_MESSAGES times)
    expected LEN\\n TEXT \\n                  (only for ok)
"""
import argparse
import sys

from transformers.utils.chat_template_utils import render_jinja_template

TEMPLATES = {
    "smollm2": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}",
        "<|im_start|>", "<|im_end|>"),
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
        "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
        "{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>"
        "\n\n' }}",
        "<|begin_of_text|>", "<|eot_id|>"),
    "llama3-gen": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
        "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
        "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
        "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
        "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
        "<|begin_of_text|>", "<|eot_id|>"),
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\n' }}{% endif %}",
        "<s>", "<|im_end|>"),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
        "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
        "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
        "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only "
        "user and assistant roles are supported!') }}{% endif %}{% endfor %}",
        "<s>", "</s>"),
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
        "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
        "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
        "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 "
        "== 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
        "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
        "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + "
        "'[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
        "<s>", "</s>"),
    "zephyr": (
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
        "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
        "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
        "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}"
        "\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
        "{% endfor %}",
        "<s>", "</s>"),
}
# the loom name each text must be detected as
LOOM_NAME = {"llama3-gen": "llama3"}

S, U, A = "system", "user", "assistant"
CONVERSATIONS = [
    [(U, "What is the capital of France?")],
    [(S, "You are terse."), (U, "Hi")],
    [(U, "Hello"), (A, "Hi there"), (U, "Who are you")],
    [(S, "Be brief. "), (U, "  padded  \n"), (A, "\t answer \u3000"), (U, "next\r\n")],
    [(U, ""), (A, "")],
    [(U, "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600 <b>x</b> {{ y }} % [INST] <|im_end|>")],
    [(S, "  sys with spaces  "), (U, "\u00a0nbsp lead"), (A, "ok"), (U, "\u2028ls\u2029")],
    [(U, "only")] + [(A, "a%d" % i) if i % 2 else (U, "u%d" % i) for i in range(1, 6)],
    [(S, "lonely system")],
    [(U, "a"), (U, "b")],                       # not alternating
    [(A, "starts with assistant"), (U, "q")],
    [(S, "sys"), (A, "assistant first after system")],
    [(U, "q"), (A, "a"), ("tool", "tool output")],  # a role most templates skip or refuse
    [(U, "q"), ("tool", "tool output")],
    [(S, "s1"), (U, "q"), (S, "s2 mid"), (A, "a")],
]


def render(text, bos, eos, conv, add_gen):
    msgs = [{"role": r, "content": c} for r, c in conv]
    try:
        out = render_jinja_template(conversations=[msgs], chat_template=text,
                                    add_generation_prompt=add_gen,
                                    bos_token=bos, eos_token=eos)
        return out[0][0]
    except Exception:  # raise_exception, undefined messages[0], ...
        return None


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2-gguf", help="check the SmolLM2 text against this GGUF's")
    ap.add_argument("-o", default="tests/model/data/chat_template_golden.txt")
    a = ap.parse_args()
    if a.smollm2_gguf:
        import gguf
        f = gguf.GGUFReader(a.smollm2_gguf).fields["tokenizer.chat_template"]
        if f.contents() != TEMPLATES["smollm2"][0]:
            sys.exit("the SmolLM2 GGUF's template differs from the text here")
    out = bytearray()
    for name, (text, bos, eos) in TEMPLATES.items():
        tb, bb, eb = text.encode(), bos.encode(), eos.encode()
        h = fnv1a64(tb)
        print(f"{name:12s} {h:016x}  {len(tb)} bytes")
        out += b"template %s %016x %d %d %d\n" % (name.encode(), h, len(bb), len(eb), len(tb))
        out += bb + eb + tb + b"\n"
    n_ok = n_err = 0
    for name, (text, bos, eos) in TEMPLATES.items():
        for conv in CONVERSATIONS:
            for add_gen in (True, False):
                r = render(text, bos, eos, conv, add_gen)
                out += b"case %s %d %d %s\n" % (name.encode(), add_gen, len(conv),
                                                 b"ok" if r is not None else b"error")
                for role, content in conv:
                    cb = content.encode()
                    out += b"msg %s %d\n" % (role.encode(), len(cb)) + cb + b"\n"
                if r is not None:
                    rb = r.encode()
                    out += b"expected %d\n" % len(rb) + rb + b"\n"
                    n_ok += 1
                else:
                    n_err += 1
    with open(a.o, "wb") as f:
        f.write(out)
    print(f"wrote {a.o}: {n_ok} renderings, {n_err} refused conversations")


if __name__ == "__main__":
    main()
