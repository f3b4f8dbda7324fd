#!/usr/bin/env python3
"""The PostgreSQL + pgvector store against loom's own exact search (ctest rag_pgvector).

  rag_pgvector.py LOOM WORKDIR

Starts a throwaway PostgreSQL 16 with pgvector 0.6.2 from the PyPI wheel
`pgserver` (initdb + pg_ctl as the user nobody when run as root, a free
loopback port, the socket in a temporary directory), loads the same vectors
into an index file and a table with `loom rag build ... --store`, and checks,
for ip, cosine and l2:
  * exact search through the store returns the ids of the local exact search,
    in order (two neighbours whose scores differ by < 1e-5 may swap), with
    the same scores (pgvector's <#>, <=>, <-> converted to loom's convention);
  * pgvector's HNSW index (`--hnsw 16,64`, ef_search 100) reaches recall@10
    >= 0.9 of the local exact search.
Exit 0 pass, 1 fail, 77 skip (only when pgserver cannot be imported or
installed).
"""
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np


def find_pgserver(workdir):
    try:
        import pgserver  # noqa: F401
    except ImportError:
        target = os.path.join(workdir, "pypkgs")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", target, "pgserver"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return None
        sys.path.insert(0, target)
        try:
            import pgserver  # noqa: F401
        except ImportError:
            return None
    import pgserver
    return os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin")


def reachable_by(path, uid):
    """Can user uid execute path (every directory above it searchable)?"""
    r = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "test", "-x", path],
                       capture_output=True)
    return r.returncode == 0


def as_user(uid, gid):
    def f():
        os.setgid(gid)
        os.setuid(uid)
    return f


def run_loom(loom, *args):
    p = subprocess.run([loom, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("loom %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr.strip()))
    return p.stdout


def hits(out, nq, k):
    res = [[] for _ in range(nq)]
    for line in out.splitlines():
        h = json.loads(line)
        res[h["query"]].append((h["id"], h["score"]))
    for r in res:
        assert len(r) == k, r
    return res


def model_cache():
    return os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "loom", "models")


def text_store(loom, url, workdir, failures):
    """`loom rag index|search|ask --store` against the same documents in an index file."""
    if not os.path.exists(os.path.join(model_cache(), "all-MiniLM-L6-v2", "config.json")):
        print("text store: skipped (all-MiniLM-L6-v2 not in the model cache)")
        return
    docs = os.path.join(workdir, "docs")
    shutil.rmtree(docs, ignore_errors=True)
    os.makedirs(docs)
    files = {
        "cats.md": "# Cats\n\nCats are small carnivorous felines. A cat purrs when it is content. "
                   "Cats sleep for most of the day and hunt at dusk.\n",
        "volcano.txt": "Volcanoes erupt molten rock called lava. Magma chambers lie below the crust. "
                       "Ash clouds can ground aircraft.\n",
        "bread.md": "# Baking\n\nBread dough rises because yeast produces carbon dioxide. "
                    "Kneading develops gluten.\n",
        "tides.txt": "The Moon orbits the Earth and causes the ocean tides.\n",
    }
    for name, text in files.items():
        with open(os.path.join(docs, name), "w") as f:
            f.write(text)
    local = os.path.join(workdir, "text.lvi")
    if os.path.exists(local):
        os.remove(local)
    st = ["--store", url, "--table", "loom_text"]

    def index_both():
        a = run_loom(loom, "rag", "index", "--docs", docs, "-o", local, "--chunk", "16", "--overlap", "4")
        b = run_loom(loom, "rag", "index", "--docs", docs, *st, "--chunk", "16", "--overlap", "4")
        return a, b

    def compare(tag):
        for q in ("why does a cat purr", "lava and ash", "what makes dough rise", "ocean tides", "gluten"):
            lo = [json.loads(l) for l in run_loom(loom, "rag", "search", "--index", local, q, "-k", "5",
                                                  "--exact", "--json").splitlines()]
            so = [json.loads(l) for l in run_loom(loom, "rag", "search", *st, q, "-k", "5", "--exact",
                                                  "--json").splitlines()]
            key = lambda h: (h["source"], h["byte_begin"], h["byte_end"], h["title"], h["text"])
            if [key(h) for h in lo] != [key(h) for h in so] or len(lo) != 5:
                failures.append("text %s %r: store hits %r, local %r" % (tag, q, so, lo))
            elif any(abs(a["score"] - b["score"]) > 1e-4 for a, b in zip(lo, so)):
                failures.append("text %s %r: scores differ" % (tag, q))
            for h in so:
                raw = open(h["source"], "rb").read()
                if raw[h["byte_begin"]:h["byte_end"]].decode() != h["text"]:
                    failures.append("text %s: store text is not the source's bytes: %r" % (tag, h))

    # a table of vectors (loom rag build) has no text settings: refused
    run_loom(loom, "rag", "build", "--vectors", os.path.join(workdir, "x.npy"), "--store", url, "--table",
             "loom_vecs")
    p = subprocess.run([loom, "rag", "index", "--docs", docs, "--store", url, "--table", "loom_vecs"],
                       capture_output=True, text=True)
    if p.returncode != 1 or "not made by loom rag index" not in p.stderr or p.stderr.count("\n") != 1:
        failures.append("text: a vectors-only table must be refused: %r" % p.stderr)
    index_both()
    compare("first")
    # incremental: one changed, one removed, one new, one unchanged
    with open(os.path.join(docs, "cats.md"), "a") as f:
        f.write("\nKittens are young cats that play with yarn.\n")
    os.remove(os.path.join(docs, "volcano.txt"))
    with open(os.path.join(docs, "rust.md"), "w") as f:
        f.write("# Rust\n\nRust is a systems programming language without a garbage collector.\n")
    a, b = index_both()
    if "2 unchanged" not in b or "2 unchanged" not in a:
        failures.append("text update: %r / %r" % (a, b))
    compare("update")
    # settings are recorded: none given -> the recorded ones; others -> refused
    out = run_loom(loom, "rag", "index", "--docs", docs, *st)
    if "4 unchanged" not in out or "chunk 16 overlap 4" not in out:
        failures.append("text: recorded settings not used: %r" % out)
    p = subprocess.run([loom, "rag", "index", "--docs", docs, *st, "--chunk", "32"], capture_output=True, text=True)
    if p.returncode != 1 or "made with --chunk 16 --overlap 4" not in p.stderr or p.stderr.count("\n") != 1:
        failures.append("text: other --chunk not refused: %r" % p.stderr)
    # ask: the context comes from the store's chunk column
    p = subprocess.run([loom, "rag", "ask", *st, "what makes dough rise", "-k", "2", "-n", "4", "--exact",
                        "--show-prompt"], capture_output=True, text=True)
    top = json.loads(run_loom(loom, "rag", "search", "--index", local, "what makes dough rise", "-k", "1",
                              "--exact", "--json").splitlines()[0])
    if p.returncode != 0 or "[1] " + top["source"] + " " not in p.stdout or top["text"] not in p.stderr:
        failures.append("text ask --store: rc %d %r %r" % (p.returncode, p.stdout, p.stderr[-500:]))
    print("text store: index/search/ask --store = the index file's exact search, before and after an update")


def main():
    loom, workdir = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(workdir, exist_ok=True)
    bindir = find_pgserver(workdir)
    if not bindir:
        print("SKIP: pgserver (PostgreSQL + pgvector wheel) cannot be installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="loom_pg_")
    os.chmod(tmp, 0o755)
    data, sock = os.path.join(tmp, "data"), os.path.join(tmp, "sock")
    os.makedirs(sock)
    pre = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        pw = pwd.getpwnam("nobody")
        for d in (tmp, sock):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        pre = as_user(pw.pw_uid, pw.pw_gid)
        # pgserver installed under a private home (/root is 0700): the
        # unprivileged server cannot run it from there; use a copy.
        if not reachable_by(os.path.join(bindir, "initdb"), pw.pw_uid):
            # keep the layout: the binaries' RPATH is $ORIGIN/../../../pgserver.libs
            site = os.path.dirname(os.path.dirname(os.path.dirname(bindir)))
            for d in ("pgserver/pginstall", "pgserver.libs"):
                if os.path.isdir(os.path.join(site, d)):
                    shutil.copytree(os.path.join(site, d), os.path.join(tmp, "site", d), symlinks=True)
            bindir = os.path.join(tmp, "site", "pgserver", "pginstall", "bin")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, LC_ALL="C")
    pg_ctl = os.path.join(bindir, "pg_ctl")
    failures = []
    try:
        subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "test", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, preexec_fn=pre, env=env, cwd=tmp)
        subprocess.run([pg_ctl, "-D", data, "-o", "-p %d -k %s -c listen_addresses=127.0.0.1" % (port, sock),
                        "-l", os.path.join(tmp, "log"), "-w", "start"],
                       check=True, capture_output=True, preexec_fn=pre, env=env, cwd=tmp)
        url = "postgresql://test@127.0.0.1:%d/postgres" % port
        rng = np.random.default_rng(5)
        d, n, nq, k = 32, 3000, 25, 10
        centres = rng.standard_normal((30, d)).astype(np.float32)
        x = (centres[rng.integers(0, 30, n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)
        q = (centres[rng.integers(0, 30, nq)] + 0.5 * rng.standard_normal((nq, d))).astype(np.float32)
        xf, qf = os.path.join(workdir, "x.npy"), os.path.join(workdir, "q.npy")
        np.save(xf, x)
        np.save(qf, q)
        mf = os.path.join(workdir, "meta.jsonl")
        with open(mf, "w") as f:
            for i in range(n):
                f.write(json.dumps({"source": "doc%d.md" % (i % 7), "title": "T\t%d \"q\"" % i,
                                    "byte_begin": 100 * i, "byte_end": 100 * i + 99, "tag": i % 5,
                                    "tag_str": "en" if i % 3 else "de"}) + "\n")
        for metric in ("ip", "cosine", "l2"):
            local = os.path.join(workdir, "local_%s.lvi" % metric)
            table = "loom_test_" + metric
            run_loom(loom, "rag", "build", "--vectors", xf, "-o", local, "--exact", "--metric", metric,
                     "--store", url, "--table", table, "--meta", mf)
            want = hits(run_loom(loom, "rag", "search", "--index", local, "--vector-file", qf, "-k", str(k),
                                 "--json"), nq, k)
            got = hits(run_loom(loom, "rag", "search", "--store", url, "--table", table, "--vector-file", qf,
                                "-k", str(k), "--exact", "--json"), nq, k)
            for qi in range(nq):
                for r in range(k):
                    (wi, ws), (gi, gs) = want[qi][r], got[qi][r]
                    if abs(ws - gs) > 1e-4 * (1 + abs(ws)):
                        failures.append("%s q%d rank %d: score %g, local %g" % (metric, qi, r, gs, ws))
                    if wi != gi:
                        # a swap of two near-equal neighbours is rounding, anything else is not
                        near = [i for i, sc in want[qi] if abs(sc - gs) < 1e-5]
                        if gi not in near:
                            failures.append("%s q%d rank %d: id %d, local %d" % (metric, qi, r, gi, wi))
            # Filters (tag, tag_str, source) and metadata: the same hits, the same fields.
            filt = ["--tag", "3", "--tag-str", "en", "--source", "doc2.md"]
            lf = [json.loads(l) for l in run_loom(loom, "rag", "search", "--index", local, "--vector-file", qf,
                                                  "-k", "5", "--json", *filt).splitlines()]
            sf = [json.loads(l) for l in run_loom(loom, "rag", "search", "--store", url, "--table", table,
                                                  "--vector-file", qf, "-k", "5", "--exact", "--json",
                                                  *filt).splitlines()]
            if len(lf) != 5 * nq or len(sf) != len(lf):
                failures.append("%s filtered: %d local hits, %d store hits" % (metric, len(lf), len(sf)))
            for a_, b_ in zip(lf, sf):
                fields = ("id", "source", "title", "tag", "tag_str", "byte_begin", "byte_end")
                if a_["id"] == b_["id"] and any(a_[f] != b_[f] for f in fields):
                    failures.append("%s filtered metadata differs: %r vs %r" % (metric, a_, b_))
                if a_["tag"] != 3 or a_["tag_str"] != "en" or a_["source"] != "doc2.md":
                    failures.append("%s filter not applied: %r" % (metric, a_))
            if [h["id"] for h in lf] != [h["id"] for h in sf]:
                failures.append("%s filtered ids differ" % metric)
            # pgvector's own HNSW index on the same table.
            run_loom(loom, "rag", "build", "--vectors", xf, "--metric", metric, "--hnsw", "16,64",
                     "--store", url, "--table", table)
            approx = hits(run_loom(loom, "rag", "search", "--store", url, "--table", table, "--vector-file", qf,
                                   "-k", str(k), "--ef", "100", "--json"), nq, k)
            rec = sum(len({i for i, _ in approx[qi]} & {i for i, _ in want[qi]}) for qi in range(nq)) / (nq * k)
            print("%s: exact through pgvector = local exact on %d queries; pgvector hnsw recall@10 %.3f"
                  % (metric, nq, rec))
            if rec < 0.9:
                failures.append("%s: pgvector hnsw recall %.3f < 0.9" % (metric, rec))
        text_store(loom, url, workdir, failures)
        # A bad URL is one line naming the problem.
        p = subprocess.run([loom, "rag", "search", "--store", "postgresql://test@127.0.0.1:1/x", "--query-vec", "1,2"],
                           capture_output=True, text=True)
        if p.returncode != 1 or "cannot connect" not in p.stderr or p.stderr.count("\n") != 1:
            failures.append("bad URL: rc %d, stderr %r" % (p.returncode, p.stderr))
    finally:
        subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True, preexec_fn=pre,
                       env=env, cwd=tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures[:20]:
        print("FAIL", f)
    print("rag_pgvector: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
