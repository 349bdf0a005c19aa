#!/usr/bin/env python3
"""Writes the training texts of the three MiniLM fine-tunes (../shared/data/make-real-checkpoints.sh) as
JSON lines, for scripts/compute_merge_stats.py (docs/merging.md §11 and §12.4):

  python scripts/minilm_train_texts.py OUT_DIR      # writes OUT_DIR/code.jsonl, prose.jsonl, c.jsonl

They are the items finetune.py drew (rebuilt with the same code and seed as scripts/eval_minilm_data.py),
so merge statistics computed from them use only what the experts were trained on, never the held-out
evaluation items: code gives each drawn pair's docstring and body as two texts, prose each drawn
paragraph, c one random 8-line crop of each drawn header (seeded; training drew its own crops).
The order is shuffled (seeded), so the first batches of compute_merge_stats.py are a sample of all.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_minilm_data as d  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(5)
    data, nfiles, _ = d.corpus_code(random.Random(0))
    d._check("code", len(data), nfiles)
    code = []
    for i in sorted(d._seen(data, d.TRAIN_SEEN["code"])):
        code += [data[i][0], data[i][1]]
    paras, nfiles = d.corpus_prose(random.Random(0))
    d._check("prose", len(paras), nfiles)
    prose = [paras[i] for i in sorted(d._seen(paras, d.TRAIN_SEEN["prose"]))]
    docs, nfiles = d.corpus_c(random.Random(0))
    d._check("c", len(docs), nfiles)
    c = []
    for i in sorted(d._seen(docs, d.TRAIN_SEEN["c"])):
        lines = docs[i]
        start = rng.randrange(0, len(lines) - d.CROP)
        c.append("\n".join(lines[start:start + d.CROP]))
    for name, texts in (("code", code), ("prose", prose), ("c", c)):
        rng.shuffle(texts)
        path = os.path.join(out, name + ".jsonl")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        os.replace(path + ".tmp", path)
        print(f"wrote {path}: {len(texts)} texts", file=sys.stderr)


if __name__ == "__main__":
    main()
