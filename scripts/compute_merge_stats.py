#!/usr/bin/env python3
"""Computes the merge statistics mrepo's data-driven methods read (docs/format.md §4.8,
docs/merging.md §11) for a Hugging Face model folder, on a few batches of your own text:

  mrepo_stats/fisher.safetensors   diagonal Fisher, one F32 tensor per model tensor (same names)
  mrepo_stats/regmean.safetensors  X.weight.gram = XᵀX of every nn.Linear's inputs, F32 [in, in]

Commit the folder with the model (mrepo commit --from MODEL, or inside a working tree), and merge
with --method fisher or --method regmean. Optional (torch + transformers + safetensors); not run in CI.

  python scripts/compute_merge_stats.py MODEL_DIR --data texts.txt [--batches 8 --batch-size 8]
      [--kinds fisher,regmean] [--max-length 128] [--out DIR] [--through MERGED_DIR]

--data: one text per line (.txt), or JSON lines with a "text" field (.jsonl). Use held-in data of the
expert's own task, never the data you evaluate on.

Fisher: the exact Fisher (labels sampled from the model, as Matena & Raffel), one example at a time:
masked-LM models (an *ForMaskedLM architecture) on 15 % masked tokens, causal LMs on next tokens, and
other models (sentence encoders, BertModel) as a unit-variance Gaussian around their mean-pooled
output embedding, so log p = −‖y − f(x)‖²/2 with y sampled. Averaged over the examples.

RegMean: a forward hook on every nn.Linear sums XᵀX over the non-padding tokens; num_samples is the
number of rows. --through MERGED_DIR computes RegMean++ Grams instead (regmean_plusplus.safetensors):
each transformer block of this model gets the hidden states that MERGED_DIR's earlier blocks produce
on this model's data (linear layers outside the blocks see MERGED_DIR's own inputs). Run it after a
first regmean merge, commit, and merge again with --set plusplus=true (repeat for a closer fit).
"""
import argparse
import gzip
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer


def read_texts(path, limit):
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if path.endswith((".jsonl", ".jsonl.gz")):
                v = json.loads(line)
                line = v.get("text") if isinstance(v, dict) else " ".join(map(str, v))
                if not line:
                    continue
            out.append(line)
            if len(out) >= limit:
                break
    if not out:
        sys.exit(f"{path}: no texts")
    return out


def checkpoint_names(folder):
    names = set()
    for f in os.listdir(folder):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(folder, f), "pt") as st:
                names.update(st.keys())
    if not names:
        sys.exit(f"{folder}: no safetensors files")
    return names


def load(folder):
    config = AutoConfig.from_pretrained(folder)
    arch = " ".join(config.architectures or [])
    if "ForCausalLM" in arch:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), "clm"
    if "ForMaskedLM" in arch:
        return AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32), "mlm"
    return AutoModel.from_pretrained(folder, dtype=torch.float32), "embedding"


def tensor_name(param_name, names):
    """The checkpoint's name of a parameter (a head model may prefix the base model's names)."""
    if param_name in names:
        return param_name
    parts = param_name.split(".", 1)
    if len(parts) == 2 and parts[1] in names:
        return parts[1]
    return None


def log_likelihood(model, kind, batch, generator):
    """log p(y | x) of labels y sampled from the model (the exact Fisher's expectation)."""
    if kind == "embedding":
        out = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1)
        y = (pooled + torch.randn(pooled.shape, generator=generator)).detach()
        return -0.5 * ((y - pooled) ** 2).sum()
    ids = batch["input_ids"]
    if kind == "mlm":
        special = torch.zeros_like(ids, dtype=torch.bool)
        for t in (model.config.pad_token_id, getattr(model.config, "cls_token_id", None), getattr(model.config, "sep_token_id", None)):
            if t is not None:
                special |= ids == t
        chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special & batch["attention_mask"].bool()
        if not chosen.any():
            chosen[0, min(1, ids.shape[1] - 1)] = True
        masked = ids.clone()
        masked[chosen] = tokenizer_mask_id
        logits = model(input_ids=masked, attention_mask=batch["attention_mask"]).logits[chosen]
    else:
        logits = model(**batch).logits[:, :-1][batch["attention_mask"][:, 1:].bool()]
    logp = torch.log_softmax(logits, dim=-1)
    y = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(-1)
    return logp.gather(-1, y.unsqueeze(-1)).sum()


def fisher(model, kind, tokenizer, texts, args, names):
    params = {n: p for n, p in model.named_parameters() if tensor_name(n, names)}
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    generator = torch.Generator().manual_seed(args.seed)
    model.eval()
    for text in texts:
        batch = tokenizer([text], return_tensors="pt", truncation=True, max_length=args.max_length)
        model.zero_grad(set_to_none=True)
        log_likelihood(model, kind, batch, generator).backward()
        for n, p in params.items():
            if p.grad is not None:
                acc[n] += p.grad.detach() ** 2
    out = {tensor_name(n, names): (a / len(texts)).float().contiguous() for n, a in acc.items()}
    return out, {"num_examples": str(len(texts)), "objective": kind}


def blocks_of(model):
    """The longest nn.ModuleList of the model: its transformer blocks."""
    best = None
    for _, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and (best is None or len(m) > len(best)):
            best = m
    return best


def regmean(model, tokenizer, texts, args, names, through=None):
    grams, rows = {}, {}
    current = {"mask": None}

    def hook_for(name):
        def hook(_, inputs):
            x = inputs[0].detach().float()
            if current["mask"] is not None and x.dim() == 3 and x.shape[:2] == current["mask"].shape:
                x = x[current["mask"]]
            x = x.reshape(-1, x.shape[-1])
            grams[name] = grams.get(name, 0) + x.T @ x
            rows[name] = rows.get(name, 0) + x.shape[0]
        return hook

    captured = []
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and tensor_name(n + ".weight", names)}
    model.eval()
    handles = []
    if through is None:
        handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in linear.items()]
    else:
        # RegMean++: blocks of this model run on the merged model's hidden states.
        mine, theirs = blocks_of(model), blocks_of(through)
        if mine is None or theirs is None or len(mine) != len(theirs):
            sys.exit("--through: the models' transformer blocks differ")
        block_ids = {id(s) for b in mine for s in b.modules()}
        in_block = {n for n, m in linear.items() if id(m) in block_ids}
        handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in linear.items() if n in in_block]
        through_linear = dict(through.named_modules())
        for n in linear:
            if n not in in_block and isinstance(through_linear.get(n), torch.nn.Linear):
                handles.append(through_linear[n].register_forward_pre_hook(hook_for(n)))
        for i, block in enumerate(theirs):
            handles.append(block.register_forward_pre_hook(
                lambda _, a, k, i=i: captured.append((i, a, k)), with_kwargs=True))
    with torch.no_grad():
        for start in range(0, len(texts), args.batch_size):
            batch = tokenizer(texts[start:start + args.batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=args.max_length)
            current["mask"] = batch["attention_mask"].bool()
            if through is None:
                model(**batch)
                continue
            del captured[:]
            through(**batch)
            for i, a, k in list(captured):
                mine[i](*a, **k)
    for h in handles:
        h.remove()
    out, metadata = {}, {"num_samples": str(max(rows.values()) if rows else 0)}
    for n, g in grams.items():
        out[tensor_name(n + ".weight", names) + ".gram"] = g.float().contiguous()
        if rows[n] != int(metadata["num_samples"]):
            metadata[f"num_samples.{tensor_name(n + '.weight', names)}"] = str(rows[n])
    return out, metadata


def main():
    global tokenizer_mask_id
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--kinds", default="fisher,regmean")
    p.add_argument("--out", help="default: MODEL/mrepo_stats")
    p.add_argument("--through", help="RegMean++: the merged model whose earlier blocks feed this model's")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    kinds = [k for k in args.kinds.split(",") if k]
    texts = read_texts(args.data, args.batches * args.batch_size)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer_mask_id = tokenizer.mask_token_id
    model, kind = load(args.model)
    names = checkpoint_names(args.model)
    out_dir = args.out or os.path.join(args.model, "mrepo_stats")
    os.makedirs(out_dir, exist_ok=True)
    for k in kinds:
        if k == "fisher":
            tensors, metadata = fisher(model, kind, tokenizer, texts, args, names)
            file = "fisher"
        elif k == "regmean":
            through = load(args.through)[0] if args.through else None
            tensors, metadata = regmean(model, tokenizer, texts, args, names, through)
            file = "regmean_plusplus" if through is not None else "regmean"
            if through is not None:
                metadata["through"] = os.path.abspath(args.through)
        else:
            sys.exit(f"unknown kind '{k}' (fisher, regmean)")
        metadata.update({"format": "mrepo-stats", "kind": file})
        path = os.path.join(out_dir, f"{file}.safetensors")
        save_file(tensors, path, metadata=metadata)
        print(f"wrote {path}: {len(tensors)} tensors, {len(texts)} texts", file=sys.stderr)


tokenizer_mask_id = None

if __name__ == "__main__":
    main()
