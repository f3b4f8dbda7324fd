#!/usr/bin/env python3
"""Writes the small fixtures of `loom data prep`'s end-to-end test
(tests/train/data/prep/), deterministically (no numpy, fixed seeds).

  python3 scripts/gen_data_prep_fixtures.py [OUTDIR]

docs.jsonl holds one record per case: kept texts, an NFKC/whitespace variant
of a kept text (exact duplicate after normalisation), one-word edits of kept
texts (near duplicates, exact Jaccard of 5-gram shingles ~0.97), a heavily
edited text (Jaccard ~0.1, kept), chat records, and broken records (invalid
JSON, missing or mistyped fields, invalid UTF-8, empty, mostly URLs).
html/ holds pages with navigation/header/footer/script boilerplate around
FAQ-style content, a copy of a page with different boilerplate (exact
duplicate once the boilerplate is gone), a near copy, and a page that is
only a link list. tests/train/check_data_prep.py computes the expected
output independently and compares.
"""
import json
import os
import random
import sys

WORDS = ("the of and to in is was for on that with as by at from it an be this are or "
         "which have has not but had they were his her their one all there been would "
         "when can who more its about into than them could some time these may other "
         "then do first any my now such like our over man me even most made after also "
         "did many before must through back years where much your way well down should "
         "because each just those people how too little state good very make world "
         "still own see men work long get here between both life being under never day "
         "same another know while last might us great old year off come since against "
         "go came right used take three small large next early young important few "
         "public bad able river garden window letter number system program question "
         "answer module python function value list string object class method memory "
         "thread server client network file path error debug build test compile").split()


def text(seed, n=300):
    r = random.Random(seed)
    return " ".join(r.choice(WORDS) for _ in range(n))


def wrap(t, width=70):
    """Lines of at most ~width characters (the texts are multi-line)."""
    out, line = [], ""
    for w in t.split(" "):
        if line and len(line) + 1 + len(w) > width:
            out.append(line)
            line = w
        else:
            line = (line + " " + w) if line else w
    out.append(line)
    return "\n".join(out)


def edit_words(t, k, seed):
    r = random.Random(seed)
    w = t.split(" ")
    for i in r.sample(range(len(w)), k):
        w[i] = "zz" + w[i]
    return " ".join(w)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "train", "data", "prep")
    os.makedirs(os.path.join(out, "html"), exist_ok=True)
    a, c, h = wrap(text(1)), wrap(text(2)), wrap(text(3))
    # A variant that NFKC + the whitespace rule turn back into a: full-width
    # letters, CRLF line ends, trailing blanks, an NBSP, blank lines around.
    a_var = "\n\n" + a.replace("python", "\uff50\uff59\uff54\uff48\uff4f\uff4e").replace(
        "\n", "  \r\n").replace(" the ", " the\u00a0", 1) + "\n\n\n"
    assert "python" in a and " the " in a
    rows = [
        json.dumps({"text": a}),                                          # 1 kept
        json.dumps({"text": a_var}),                                      # 2 exact dup of 1
        json.dumps({"text": c, "id": 3}),                                 # 3 kept
        json.dumps({"text": edit_words(c, 1, 7), "id": 4}),               # 4 near dup of 3
        '{"text": "unterminated',                                         # 5 invalid JSON
        json.dumps({"id": 6}),                                            # 6 no field
        json.dumps({"messages": [{"role": "user", "content": "How do I read a file?"},
                                 {"role": "assistant", "content": "Use open(path) and\n"
                                  "    read() it.\n\nAsk admin@example.com if stuck."}]}),  # 7
        json.dumps({"messages": [{"role": "user", "content": "How do I read a file?  "},
                                 {"role": "assistant", "content": "Use open(path) and  \r\n"
                                  "    read() it.\r\n\r\n\r\nAsk admin@example.com if stuck."}],
                    "x": 1}),                                             # 8 exact dup of 7
        json.dumps({"text": "Docs at https://docs.python.org/3/faq/ and mail "
                            "bob.smith@mail.example.org for help."}),     # 9 kept, redacted
        json.dumps({"text": "https://a.example.com/x https://b.example.com/y "
                            "www.c.example.com/zzzzzzzz ok"}),            # 10 mostly URLs
        None,                                                             # 11 invalid UTF-8
        json.dumps({"text": " \n\t "}),                                   # 12 empty
        json.dumps({"text": 12}),                                         # 13 not a string
        json.dumps({"meta": {"lang": "en"}, "text": h}),                  # 14 kept, meta kept
        json.dumps({"text": edit_words(c, 150, 8)}),                      # 15 kept (far)
        "[1, 2]",                                                         # 16 not an object
        json.dumps({"messages": [{"role": "user"}]}),                     # 17 malformed msgs
        json.dumps({"id": 18, "text": a}),                                # 18 exact dup of 1
        json.dumps({"text": " ".join(h.split(" ")[:150] + h.split(" ")[151:])}),  # 19 near 14
        "",                                                               # blank: no record
        json.dumps({"text": "caf\u00e9 \ufb01le \u2460"}),               # 21 kept, NFKC
    ]
    with open(os.path.join(out, "docs.jsonl"), "wb") as f:
        for r in rows:
            if r is None:
                f.write(b'{"text": "bad \xff byte"}\n')
            else:
                f.write(r.encode() + b"\n")

    boiler = ('<div class="related" role="navigation"><a href="a.html">SITE-NAV-MARKER</a></div>'
              '<nav><a href="/">NAV-MARKER</a></nav><header>HEADER-MARKER</header>'
              '<script>document.write("SCRIPT-MARKER")</script>')
    foot = ('<div class="sphinxsidebar"><h3>Previous topic</h3><p>SIDEBAR-MARKER</p></div>'
            '<div class="footer">FOOTER-MARKER</div>')

    def page(title, body, pre="", post=""):
        return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s</title>'
                '<style>.x{color:red}</style></head><body>%s<div class="body" role="main">'
                '%s</div>%s</body></html>' % (title, pre + boiler, body, foot + post))

    qa = "".join('<section><h3>Question %d about %s?<a class="headerlink" href="#q%d">\u00b6</a>'
                 '</h3><p>%s</p></section>' % (i, w, i, text(100 + i, 60))
                 for i, w in enumerate(["files", "threads", "memory"]))
    body1 = '<h1>FAQ one</h1><h2>Basics</h2>' + qa + '<pre>x = 1\nif x:\n    print(x)\n</pre>'
    pages = {
        "a_faq.html": page("FAQ one", body1),
        # The same content under other boilerplate: identical once removed.
        "b_copy.html": page("FAQ one (mirror)", body1, pre='<div id="menu"><ul><li>'
                            '<a href="m">MENU-MARKER</a></li></ul></div>',
                            post='<footer>OTHER-FOOTER-MARKER</footer>'),
        "c_long.html": page("Long", '<h1>Long page</h1><p>%s</p>' % text(50, 300)),
        "d_near.html": page("Long again", '<h1>Long page</h1><p>%s</p>' %
                            edit_words(text(50, 300), 1, 9)),
        "e_links.html": page("Index", '<ul>' + "".join(
            '<li><a href="p%d.html">Page %d</a></li>' % (i, i) for i in range(20)) + '</ul>'),
    }
    for name, html in pages.items():
        with open(os.path.join(out, "html", name), "w", encoding="utf-8") as f:
            f.write(html)
    print("wrote %s: docs.jsonl (%d lines), html/ (%d pages)" % (out, len(rows), len(pages)))


if __name__ == "__main__":
    main()
