"""Held-out data for scripts/eval_minilm.py (see docs/merging.md §12).

The three MiniLM fine-tunes of ../shared/data/make-real-checkpoints.sh were trained by finetune.py on
samples drawn from local corpora with random.Random(seed). This module rebuilds those corpora with the SAME
code and seed, reconstructs exactly which samples each run saw (step i uses data[(i*bs + j) % len(data)]),
and builds evaluation items from what no run saw, in two disjoint splits (val, test). Every exclusion is
checked by assertion: a reconstruction that does not reproduce the training logs' counts is an error, not
a warning, because a wrong reconstruction would silently leak training data into the evaluation.
"""
import ast, glob, gzip, hashlib, os, random

# The largest training runs of the family (ft_*: 200 steps x 16; lora_*: 80 x 8 see a prefix of these).
TRAIN_SEEN = {"code": 200 * 16, "prose": 200 * 16, "c": 200 * 16}
# finetune.py's logged corpus sizes (examples, files) for seed 0; checked before anything is excluded.
EXPECTED = {"code": (4612, 638), "prose": (949, 211), "c": (6551, 7491)}
CAP = {"code": 400, "c": 400, "prose": 250}  # items per split: enough for ~1-2 % noise, fast on one core
NGRAM = 8            # prose near-duplicate test: word 8-grams
NEAR_DUP = 0.10      # a prose paragraph sharing > 10 % of its 8-grams with training (or kept) text is dropped
CROP = 8             # C crops are 8 non-empty lines, as in training


def _h(s):
    return hashlib.sha1(s.encode("utf-8", "surrogatepass")).hexdigest()


def split_of(key):
    """Deterministic, order-independent val/test assignment from a content hash."""
    return "val" if int(_h(key)[:8], 16) % 2 == 0 else "test"


# ---- finetune.py's corpora, verbatim in behaviour (same globs, filters, order, shuffle) ----

def corpus_code(rng, n_max=6000):
    pairs = []
    files = sorted(glob.glob("/usr/lib/python3.11/**/*.py", recursive=True))
    files = [f for f in files if "/test" not in f and "site-packages" not in f and "dist-packages" not in f]
    for fn in files:
        try:
            src = open(fn, encoding="utf-8").read()
            tree = ast.parse(src)
        except Exception:
            continue
        lines = src.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if not doc or len(doc) < 20:
                    continue
                body = node.body[1:]
                if not body:
                    continue
                code = "\n".join(lines[body[0].lineno - 1: node.end_lineno])
                if len(code) < 40:
                    continue
                pairs.append((" ".join(doc.split()), code))
    rng.shuffle(pairs)
    return pairs[:n_max], len(files), pairs[n_max:]


def _prose_paras(txt):
    out = []
    for p in txt.split("\n\n"):
        p = " ".join(p.split())
        if len(p) > 200 and sum(c.isalpha() for c in p) / len(p) > 0.7:
            out.append(p)
    return out


def corpus_prose(rng):
    files = sorted(glob.glob("/usr/share/common-licenses/*"))
    files += sorted(f for f in glob.glob("/usr/share/doc/**/README*", recursive=True)
                    if not f.endswith((".gz", ".html")) and os.path.isfile(f))
    seen, paras = set(), []
    for fn in files:
        real = os.path.realpath(fn)
        if real in seen:
            continue
        seen.add(real)
        try:
            txt = open(real, encoding="utf-8", errors="strict").read()
        except Exception:
            continue
        paras += _prose_paras(txt)
    rng.shuffle(paras)
    return paras, len(seen)


def corpus_c(rng):
    files = sorted(glob.glob("/usr/include/**/*.h", recursive=True))
    docs = []
    for fn in files:
        try:
            lines = [l for l in open(fn, encoding="utf-8").read().splitlines() if l.strip()]
        except Exception:
            continue
        if len(lines) >= 30:
            docs.append(lines)
    rng.shuffle(docs)
    return docs, len(files)


def _seen(data, n):
    """Indices finetune.py's loop visits: data[(i*bs + j) % len(data)] for the first n draws."""
    return {k % len(data) for k in range(n)}


def _check(task, n, files):
    if (n, files) != EXPECTED[task]:
        raise RuntimeError(f"{task} corpus: rebuilt {n} examples from {files} files, finetune.py logged "
                           f"{EXPECTED[task]}; this machine's files changed, so the training samples cannot be "
                           "reconstructed and held-out data cannot be guaranteed disjoint")


# ---- held-out items ----

def heldout_code(log):
    data, nfiles, overflow = corpus_code(random.Random(0))
    _check("code", len(data), nfiles)
    seen = _seen(data, TRAIN_SEEN["code"])
    train = [data[i] for i in sorted(seen)]
    tdocs, tcodes = {d for d, _ in train}, {c for _, c in train}
    pool = [data[i] for i in range(len(data)) if i not in seen] + overflow
    items, docs, codes = {"val": [], "test": []}, set(), set()
    dropped = 0
    for d, c in sorted(pool, key=lambda p: _h(p[0] + "\0" + p[1])):
        # a duplicated docstring or body (overloads, copies across modules) would be seen text or an
        # ambiguous retrieval target: drop it
        if d in tdocs or c in tcodes or d in docs or c in codes:
            dropped += 1
            continue
        docs.add(d); codes.add(c)
        items[split_of(d + "\0" + c)].append({"q": d, "p": c})
    for s in items:
        items[s] = items[s][:CAP["code"]]
        assert not any(x["q"] in tdocs or x["p"] in tcodes for x in items[s]), "code: overlap with training"
    log(f"code: {len(data)} pairs, {len(train)} seen in training, {len(pool)} unseen, {dropped} duplicates dropped")
    return items


def _ngrams(text):
    w = text.lower().split()
    return {hash(tuple(w[i:i + NGRAM])) for i in range(max(1, len(w) - NGRAM + 1))}


def heldout_prose(log):
    paras, nfiles = corpus_prose(random.Random(0))
    _check("prose", len(paras), nfiles)
    seen = _seen(paras, TRAIN_SEEN["prose"])
    # 3200 draws over 949 paragraphs: every paragraph was trained on. Held-out prose therefore comes from the
    # same kinds of documents that finetune.py skipped: compressed READMEs (README*.gz, excluded only for
    # being compressed) and packages' licence files (/usr/share/doc/*/copyright), with near-duplicates of
    # the training text removed (licence texts are copied everywhere).
    train = [paras[i] for i in sorted(seen)]
    known = set()
    for p in train:
        known |= _ngrams(p)
    tset = set(train)
    files = sorted({os.path.realpath(f) for f in glob.glob("/usr/share/doc/**/README*.gz", recursive=True)
                    if os.path.isfile(f)})
    files += sorted({os.path.realpath(f) for f in glob.glob("/usr/share/doc/*/copyright") if os.path.isfile(f)})
    cand = []
    for fn in files:
        try:
            raw = gzip.open(fn).read() if fn.endswith(".gz") else open(fn, "rb").read()
            txt = raw.decode("utf-8")
        except Exception:
            continue
        cand += [(fn, p) for p in _prose_paras(txt)]
    items, dropped = {"val": [], "test": []}, 0
    for fn, p in sorted(cand, key=lambda x: _h(x[1])):
        g = _ngrams(p)
        if p in tset or len(g & known) > NEAR_DUP * len(g):
            dropped += 1
            continue
        known |= g  # later near-copies (in either split) are dropped too, so val and test stay disjoint
        items[split_of(fn)].append({"t": p})  # split by source file: val and test come from different files
    for s in items:
        items[s] = items[s][:CAP["prose"]]
        assert not any(x["t"] in tset for x in items[s]), "prose: overlap with training"
    log(f"prose: {len(paras)} training paragraphs (all seen), {len(cand)} candidates from {len(files)} "
        f"README.gz/copyright files, {dropped} exact or near duplicates dropped")
    return items


def _windows(lines):
    return {hash("\n".join(lines[i:i + CROP])) for i in range(len(lines) - CROP + 1)}


def heldout_c(log):
    docs, nfiles = corpus_c(random.Random(0))
    _check("c", len(docs), nfiles)
    seen = _seen(docs, TRAIN_SEEN["c"])
    # training drew random 8-line crops of these headers, so every 8-line window of a trained header counts
    # as seen; /usr/include holds many copies of the same header, so the test is on windows, not files
    train = set()
    for i in seen:
        train |= _windows(docs[i])
    known = set(train)
    items, dropped, pool = {"val": [], "test": []}, 0, 0
    for lines in sorted((docs[i] for i in range(len(docs)) if i not in seen), key=lambda d: _h("\n".join(d))):
        pool += 1
        wins = ["\n".join(lines[i:i + CROP]) for i in range(len(lines) - CROP + 1)]
        free = [i for i, w in enumerate(wins) if hash(w) not in known]
        key = "\n".join(lines)
        r = random.Random(_h(key))
        # two disjoint crops, each an 8-line window no trained header contains (licence boilerplate at the
        # top of many headers was seen in training; the header's own content was not)
        s1 = r.choice(free) if free else None
        far = [i for i in free if s1 is not None and abs(i - s1) >= CROP]
        if not far:
            dropped += 1
            continue
        s2 = r.choice(far)
        known |= {hash(w) for w in wins}  # a later copy of this header finds no free window: dropped
        q, p = wins[s1], wins[s2]
        if r.random() < 0.5:
            q, p = p, q
        items[split_of(key)].append({"q": q, "p": p})
    for s in items:
        items[s] = items[s][:CAP["c"]]
    for s in items:
        assert not any(hash(x["q"]) in train or hash(x["p"]) in train for x in items[s]), "c: overlap"
    log(f"c: {len(docs)} headers, {len(seen)} seen in training, {pool} unseen, {dropped} without two disjoint "
        "unseen 8-line windows (copies of trained or already kept headers) dropped")
    return items


def build(log):
    items = {"code": heldout_code(log), "c": heldout_c(log), "prose": heldout_prose(log)}
    for t, by in items.items():
        a, b = by["val"], by["test"]
        ka = {x.get("q", x.get("t")) for x in a} | {x.get("p") for x in a}
        kb = {x.get("q", x.get("t")) for x in b} | {x.get("p") for x in b}
        assert not ((ka & kb) - {None}), f"{t}: val and test share an item"
        log(f"{t}: val {len(a)}, test {len(b)} items")
    return items
