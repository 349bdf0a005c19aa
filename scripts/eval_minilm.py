#!/usr/bin/env python3
"""Held-out evaluation of a MiniLM (BertModel) checkpoint folder on the three tasks of the real fine-tune family.

  eval_minilm.py [--split val|test] [--raw] [--tasks code,c,prose] MODEL_DIR

Tasks (data, splits, metrics and the no-overlap checks: docs/merging.md §12; data: eval_minilm_data.py):
  code   docstring -> function-body retrieval among the split's bodies (mean pooling, cosine): MRR (and R@1)
  c      8-line crop -> other 8-line crop of the same C header, among the split's crops: MRR (and R@1)
  prose  masked-token prediction on unseen licence/README prose, 15 % of tokens masked (fixed positions),
         decoder tied to word_embeddings as finetune.py trained it: top-1 accuracy (and mean NLL)

Contract shared with `mrepo merge --search --eval CMD` and the pre-merge-commit hook: progress goes to stderr;
the LAST stdout line is one JSON object of task scores, each 100 x (model's metric / its expert's metric on the
same split), higher is better. `--raw` prints the raw metrics instead. Any failure: a one-line message on
stderr and exit status 2 (1 for usage errors), nothing on stdout. Scores that are not finite (a model that
produces NaNs) are reported as 0.

MODEL_DIR holds model.safetensors (or shards, or an all-in-one *.safetensors; bf16/fp16 are upcast), the
names of BertModel (a "bert." prefix is stripped), with or without pooler tensors; config.json is read from
MODEL_DIR when present, else from --base. A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)
is folded into --base (W + alpha/r * B A), which is how the LoRA experts are scored.

Caches (~/.cache/mrepo-eval, or $MREPO_EVAL_CACHE): held-out items (built once, ~20 s), tokenised tensors,
and each expert's raw metrics keyed by the sha256 of the expert folder's weights and config. Files are
written atomically (temp + rename), so parallel evaluations (`--jobs`) may share the cache.
"""
import argparse, hashlib, json, math, os, sys, tempfile, time

VERSION = "eval-minilm-1"  # bump when data, masking or metrics change: old caches are then ignored
REAL = os.environ.get("REALDATA", os.path.expanduser("~/.cache/mrepo-realdata"))
TASKS = ("code", "c", "prose")
PRIMARY = {"code": "mrr", "c": "mrr", "prose": "acc"}
MAXLEN = {"code": 32, "c": 32, "prose": 64}  # code/c as trained (32); prose a little longer than training's 48
MASK_P = 0.15


class Fail(Exception):
    pass


def log(msg):
    print(f"[eval_minilm] {msg}", file=sys.stderr, flush=True)


def atomic_write(path, write):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha_files(paths):
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- data

def load_items(cache):
    path = os.path.join(cache, f"heldout-{VERSION}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import eval_minilm_data
    log("building held-out data from the training corpora (once)")
    items = eval_minilm_data.build(log)
    atomic_write(path, lambda f: f.write(json.dumps(items).encode()))
    return items


def tokenised(cache, tok, items, split):
    import torch
    vocab = sha_files([os.path.join(REAL, "base", "vocab.txt")])[:16]
    path = os.path.join(cache, f"tok-{VERSION}-{vocab}-{split}.pt")
    if os.path.exists(path):
        return torch.load(path)
    out = {}

    def enc(texts, maxlen):
        return dict(tok(texts, padding=True, truncation=True, max_length=maxlen, return_tensors="pt"))

    for t in ("code", "c"):
        xs = items[t][split]
        out[t] = {"q": enc([x["q"] for x in xs], MAXLEN[t]), "p": enc([x["p"] for x in xs], MAXLEN[t])}
    x = enc([x["t"] for x in items["prose"][split]], MAXLEN["prose"])
    ids = x["input_ids"]
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
    g = torch.Generator().manual_seed(1234)  # fixed mask positions: every model sees the same cloze test
    sel = (torch.rand(ids.shape, generator=g) < MASK_P) & ~special
    inp = ids.clone()
    inp[sel] = tok.mask_token_id  # all selected positions become [MASK] (no 80/10/10 at evaluation)
    out["prose"] = {"input_ids": inp, "attention_mask": x["attention_mask"],
                    "token_type_ids": x["token_type_ids"], "sel": sel, "orig": ids}
    atomic_write(path, lambda f: torch.save(out, f))
    return out


# ---------------------------------------------------------------- models

def weight_files(d):
    fs = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".safetensors"))
    if not fs:
        raise Fail(f"{d}: no *.safetensors file")
    return fs


def is_adapter(d):
    return os.path.exists(os.path.join(d, "adapter_config.json"))


def model_hash(d, base):
    files = weight_files(d) + [os.path.join(d, f) for f in ("config.json", "adapter_config.json")
                               if os.path.exists(os.path.join(d, f))]
    h = sha_files(files)
    if is_adapter(d):  # an adapter's score depends on the base it is folded into too
        return hashlib.sha256((sha_files(weight_files(base)) + "+" + h).encode()).hexdigest()
    return h


def read_state(d):
    import torch
    from safetensors.torch import load_file
    sd = {}
    for f in weight_files(d):
        try:
            part = load_file(f)
        except Exception as e:
            raise Fail(f"{f}: not a readable safetensors file ({str(e).splitlines()[0]})")
        sd.update(part)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def fold_lora(d, base):
    import torch
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    if cfg.get("use_dora") or cfg.get("use_rslora"):
        raise Fail(f"{d}/adapter_config.json: DoRA/rsLoRA adapters are not supported")
    sd = read_state(base)
    ad = read_state(d)
    scale = cfg["lora_alpha"] / cfg["r"]
    n = 0
    for k, a in ad.items():
        if ".lora_A." not in k:
            continue
        b = ad[k.replace(".lora_A.", ".lora_B.")]
        target = k.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
        if target not in sd:
            raise Fail(f"{d}: adapter tensor {k} has no base tensor {target}")
        sd[target] = sd[target] + scale * (b @ a)
        n += 1
    if n == 0:
        raise Fail(f"{d}: adapter holds no lora_A/lora_B pairs")
    return sd


def load_model(d, base):
    import torch
    from transformers import BertConfig, BertModel
    if not os.path.isdir(d):
        raise Fail(f"{d}: not a directory")
    sd = fold_lora(d, base) if is_adapter(d) else read_state(d)
    sd = {(k[5:] if k.startswith("bert.") else k): v for k, v in sd.items()}
    cfg_dir = d if os.path.exists(os.path.join(d, "config.json")) and not is_adapter(d) else base
    model = BertModel(BertConfig.from_pretrained(cfg_dir), add_pooling_layer=False)
    body = {k: v for k, v in sd.items() if not k.startswith(("cls.", "pooler."))}
    missing, unexpected = model.load_state_dict(body, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    unexpected = [u for u in unexpected if "position_ids" not in u]
    if missing or unexpected:
        raise Fail(f"{d}: not a MiniLM/BertModel checkpoint (missing {missing[:3]}, unexpected {unexpected[:3]})")
    # MLM head. finetune.py trained prose with a decoder tied to word_embeddings plus a bias it did not save,
    # so a checkpoint of this family has no head: we use the tied decoder with a zero bias, for every model
    # (experts and merges alike, so the ratio compares like with like). A BertForMaskedLM checkpoint that does
    # carry cls.predictions.* uses its own transform and bias.
    head = {k[len("cls.predictions."):]: v for k, v in sd.items() if k.startswith("cls.predictions.")}
    model.eval()
    return model, head


# ---------------------------------------------------------------- metrics

def encode(model, enc, bs=64):
    import torch
    import torch.nn.functional as F
    n = enc["input_ids"].shape[0]
    lens = enc["attention_mask"].sum(1)
    order = torch.argsort(lens, descending=True)  # length-sorted batches: little padding
    out = torch.empty(n, model.config.hidden_size)
    for i in range(0, n, bs):
        idx = order[i:i + bs]
        L = int(lens[idx].max())
        x = {k: v[idx, :L] for k, v in enc.items()}
        h = model(**x).last_hidden_state
        m = x["attention_mask"].unsqueeze(-1).to(h.dtype)
        out[idx] = F.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
    return out


def retrieval(model, data):
    import torch
    q, p = encode(model, data["q"]), encode(model, data["p"])
    sim = q @ p.T
    gold = sim.diagonal().unsqueeze(1)
    rank = (sim > gold).sum(1) + 1  # an exact tie counts in the model's favour
    rank[~torch.isfinite(sim).all(1)] = sim.shape[1]  # NaN/inf embeddings: worst rank, not a free win
    return {"r1": float((rank == 1).float().mean()), "mrr": float((1.0 / rank.float()).mean())}


def masked_lm(model, head, data, bs=32):
    import torch
    import torch.nn.functional as F
    emb = model.embeddings.word_embeddings.weight
    correct, nll, count = 0, 0.0, 0
    n = data["input_ids"].shape[0]
    for i in range(0, n, bs):
        x = {k: data[k][i:i + bs] for k in ("input_ids", "attention_mask", "token_type_ids")}
        sel = data["sel"][i:i + bs]
        L = int(x["attention_mask"].sum(1).max())
        x = {k: v[:, :L] for k, v in x.items()}
        sel = sel[:, :L]
        labels = data["orig"][i:i + bs, :L][sel]
        h = model(**x).last_hidden_state[sel]
        if "transform.dense.weight" in head:
            h = F.linear(h, head["transform.dense.weight"], head["transform.dense.bias"])
            h = F.layer_norm(F.gelu(h), (h.shape[-1],), head["transform.LayerNorm.weight"],
                             head["transform.LayerNorm.bias"], model.config.layer_norm_eps)
        logits = h @ emb.T
        if "bias" in head:
            logits = logits + head["bias"]
        correct += int(((logits.argmax(-1) == labels) & torch.isfinite(logits).all(-1)).sum())
        nll += float(F.cross_entropy(logits, labels, reduction="sum"))
        count += labels.numel()
    return {"acc": correct / count, "nll": nll / count}


def evaluate(model_dir, base, data, tasks):
    import torch
    t0 = time.time()
    model, head = load_model(model_dir, base)
    res = {}
    with torch.inference_mode():
        for t in tasks:
            res[t] = masked_lm(model, head, data[t]) if t == "prose" else retrieval(model, data[t])
            log(f"{os.path.basename(os.path.normpath(model_dir))} {t}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in res[t].items()) + f" ({time.time() - t0:.1f}s)")
    return res


def expert_metrics(cache, split, task, expert, base, data):
    import fcntl
    key = model_hash(expert, base)
    path = os.path.join(cache, "experts", f"{VERSION}-{split}-{task}-{key[:48]}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # parallel evaluations (merge --search --jobs J) would each score the expert: the first takes the lock and
    # scores it, the others wait and read its result
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        log(f"scoring expert {expert} on {task}/{split} (once; cached by content hash)")
        m = evaluate(expert, base, data, [task])[task]
        atomic_write(path, lambda f: f.write(json.dumps(m).encode()))
        return m


def finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else 0.0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", metavar="MODEL_DIR")
    ap.add_argument("--split", choices=["val", "test"], default="val",
                    help="val for tuning and search (default), test for what is reported")
    ap.add_argument("--raw", action="store_true", help="print raw metrics instead of %% of expert")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of code,c,prose")
    ap.add_argument("--base", default=os.path.join(REAL, "base"), help="base folder (tokenizer, config, LoRA base)")
    ap.add_argument("--expert", action="append", default=[], metavar="TASK=DIR",
                    help="expert for a task (default ft_code, ft_c, ft_prose under $REALDATA); repeatable")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: best on a shared 2-core box)")
    ap.add_argument("--cache", default=os.environ.get("MREPO_EVAL_CACHE", os.path.expanduser("~/.cache/mrepo-eval")))
    a = ap.parse_args(argv)
    tasks = [t for t in a.tasks.split(",") if t]
    if not tasks or any(t not in TASKS for t in tasks):
        ap.error(f"--tasks: expected a subset of {','.join(TASKS)}, got {a.tasks!r}")
    experts = {"code": os.path.join(REAL, "ft_code"), "c": os.path.join(REAL, "ft_c"),
               "prose": os.path.join(REAL, "ft_prose")}
    for e in a.expert:
        t, sep, d = e.partition("=")
        if not sep or t not in TASKS:
            ap.error(f"--expert: expected TASK=DIR with TASK in {','.join(TASKS)}, got {e!r}")
        experts[t] = d
    import torch
    from transformers import AutoTokenizer
    torch.set_num_threads(a.threads)
    t0 = time.time()
    items = load_items(a.cache)
    data = tokenised(a.cache, AutoTokenizer.from_pretrained(a.base), items, a.split)
    res = evaluate(a.model_dir, a.base, data, tasks)
    if a.raw:
        out = {f"{t}_{m}": round(finite(v), 6) for t in tasks for m, v in res[t].items()}
    else:
        out = {}
        for t in tasks:
            ref = expert_metrics(a.cache, a.split, t, experts[t], a.base, data)[PRIMARY[t]]
            if not ref > 0:
                raise Fail(f"{experts[t]}: expert scores {ref} on {t}; cannot express scores as % of it")
            out[t] = round(finite(100.0 * res[t][PRIMARY[t]] / ref), 3)
    log(f"done in {time.time() - t0:.1f}s (split {a.split})")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Fail as e:
        print(f"eval_minilm: {e}", file=sys.stderr)
        sys.exit(2)
    except (OSError, ValueError, KeyError, RuntimeError, AssertionError) as e:
        print(f"eval_minilm: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        sys.exit(2)
