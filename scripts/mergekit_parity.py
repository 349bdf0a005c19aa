#!/usr/bin/env python3
"""Parity harness: mrepo's merges against the real mergekit on real checkpoints.

NOT RUN IN CI. Run it by hand (scripts/mergekit-parity.sh) with the Python of a venv that has mergekit
(0.1.5 when written), torch, numpy and safetensors:

    ~/.cache/mergekit-venv/bin/python scripts/mergekit_parity.py \
        --mrepo .build/debug/mrepo --json /tmp/parity.json

Inputs (--data, default ~/.cache/mrepo-realdata): base/ (a BERT checkpoint with config and tokenizer) and
the full fine-tunes ft_code/, ft_prose/, ft_c/ of it.

What it does:
1. Builds a scratch mrepo repository: base on main, each fine-tune on its own branch (code, prose, c).
2. For each recipe of RECIPES (data below; models named by key), writes the recipe twice: for mergekit
   with the checkpoint folders' paths, for mrepo with branch names (the base is `main`). Runs
   `mergekit-yaml RECIPE OUT` (CPU, HF_HUB_OFFLINE=1), then on a fresh branch from `main`
   `mrepo merge --config RECIPE` and `mrepo export HEAD OUT`, each timed with its peak RSS.
3. Compares every tensor of the two outputs (mergekit's is the reference b, mrepo's a): presence,
   dtype, shape, bit-identical elements, max |a-b|, max |a-b| / max |b| per tensor and overall, the
   tensors that differ most, and which input (if any) mrepo's or mergekit's tensor equals bit for bit.
   A failing merge (either tool) is recorded with its error text; the next recipe runs.
Prints a table per recipe and a summary; --json writes everything (timings included).

--timing-only skips the export and the comparison (and loading the inputs): mrepo-bench's mergekit
section runs it that way and reads the JSON. --repeat N runs each tool N times per recipe, each after a
sync and a warm read of its inputs, and reports the fastest run with the largest peak RSS. Every mrepo run
is a first merge of its recipe: it starts from a fresh copy of the repository holding only the four models
(--warm-repo runs them all in one repository instead, so later runs find their results stored).

mergekit 0.1.5 cannot plan a BERT model: mergekit/plan.py concatenates a list and a tuple
(`[w_in.name] + (w_in.aliases or [])`, TypeError). This script patches the INSTALLED file of the venv
it runs from, idempotently, to `[w_in.name] + list(w_in.aliases or [])` (--no-patch skips that).
mergekit's code is never part of this repository.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch
from safetensors import safe_open

# --------------------------------------------------------------------------------------------------
# Recipes. Model names are keys of MODELS; the harness substitutes folders (mergekit) or branches (mrepo).
# 'start' is the revision the mrepo branch is created from (octopus merges start from main = the base).

MODELS = {
    # key: (folder under --data, mrepo branch)
    "base": ("base", "main"),
    "code": ("ft_code", "code"),
    "prose": ("ft_prose", "prose"),
    "c": ("ft_c", "c"),
}

THREE = ["code", "prose", "c"]


def _models(names, **params):
    return [{"model": n, "parameters": dict(params)} if params else {"model": n} for n in names]


RECIPES = [
    {
        "name": "task_arithmetic_one",
        "about": "task_arithmetic, code only, weight 0.5",
        "recipe": {
            "merge_method": "task_arithmetic",
            "base_model": "base",
            "models": _models(["code"], weight=0.5),
            "dtype": "float32",
        },
    },
    {
        "name": "task_arithmetic_three",
        "about": "task_arithmetic, code/prose/c weight 1, lambda 0.5",
        "recipe": {
            "merge_method": "task_arithmetic",
            "base_model": "base",
            "models": _models(THREE, weight=1.0),
            "parameters": {"lambda": 0.5},
            "dtype": "float32",
        },
    },
    {
        "name": "ties_three",
        "about": "ties, density 0.5, weight 1",
        "recipe": {
            "merge_method": "ties",
            "base_model": "base",
            "models": _models(THREE, density=0.5, weight=1.0),
            "dtype": "float32",
        },
    },
    {
        "name": "ties_int8_normalize",
        "about": "ties, density 0.5, weight 1, int8_mask true, normalize true",
        "recipe": {
            "merge_method": "ties",
            "base_model": "base",
            "models": _models(THREE, density=0.5, weight=1.0),
            "parameters": {"int8_mask": True, "normalize": True},
            "dtype": "float32",
        },
    },
    {
        "name": "linear_equal",
        "about": "linear, weights 1/1/1 (no base model)",
        "recipe": {
            "merge_method": "linear",
            "models": _models(THREE, weight=1.0),
            "dtype": "float32",
        },
    },
    {
        "name": "linear_weighted",
        "about": "linear, weights 0.5/0.3/0.2 (no base model)",
        "recipe": {
            "merge_method": "linear",
            "models": [
                {"model": "code", "parameters": {"weight": 0.5}},
                {"model": "prose", "parameters": {"weight": 0.3}},
                {"model": "c", "parameters": {"weight": 0.2}},
            ],
            "dtype": "float32",
        },
    },
    {
        "name": "model_stock_three",
        "about": "model_stock, code/prose/c",
        "recipe": {
            "merge_method": "model_stock",
            "base_model": "base",
            "models": _models(THREE),
            "dtype": "float32",
        },
    },
    {
        "name": "breadcrumbs_three",
        "about": "breadcrumbs, density 0.9, gamma 0.01, weight 1",
        "recipe": {
            "merge_method": "breadcrumbs",
            "base_model": "base",
            "models": _models(THREE, density=0.9, gamma=0.01, weight=1.0),
            "dtype": "float32",
        },
    },
    {
        "name": "breadcrumbs_ties_three",
        "about": "breadcrumbs_ties, density 0.9, gamma 0.01, weight 1",
        "recipe": {
            "merge_method": "breadcrumbs_ties",
            "base_model": "base",
            "models": _models(THREE, density=0.9, gamma=0.01, weight=1.0),
            "dtype": "float32",
        },
    },
    {
        "name": "slerp_t03",
        "about": "slerp base -> code, t 0.3",
        "recipe": {
            "merge_method": "slerp",
            "base_model": "base",
            "models": _models(["base", "code"]),
            "parameters": {"t": 0.3},
            "dtype": "float32",
        },
    },
    {
        "name": "slerp_filters",
        "about": "slerp base -> code, t per module: attention / intermediate gradients, else 0.5",
        "recipe": {
            "merge_method": "slerp",
            "base_model": "base",
            "models": _models(["base", "code"]),
            "parameters": {
                "t": [
                    {"filter": "attention", "value": [0, 0.5, 0.3, 0.7, 1]},
                    {"filter": "intermediate", "value": [1, 0.5, 0.7, 0.3, 0]},
                    {"value": 0.5},
                ]
            },
            "dtype": "float32",
        },
    },
]

for _r in RECIPES:
    _r.setdefault("start", "main")

# --------------------------------------------------------------------------------------------------
# A small YAML writer (block mappings and lists, flow lists of scalars): enough for these recipes.


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    return json.dumps(s) if any(c in s for c in ":#{}[],&*!|>'\"%@`") or s != s.strip() else s


def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v and not _flat_list(v):
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {_inline(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2).split("\n")
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
    return "\n".join(lines)


def _flat_list(v):
    return isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)


def _inline(v):
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{}"
    return _scalar(v)


def render(recipe, name_of):
    r = json.loads(json.dumps(recipe))
    if "base_model" in r:
        r["base_model"] = name_of(r["base_model"])
    for m in r["models"]:
        m["model"] = name_of(m["model"])
    return to_yaml(r) + "\n"


# --------------------------------------------------------------------------------------------------
# Running commands with wall time and peak RSS.

TIME_BIN = "/usr/bin/time"


def run(cmd, log_prefix, env=None, cwd=None):
    """Runs cmd; stdout/stderr go to LOG.out/LOG.err. Returns a dict with rc, wall_s, peak_rss_kib, the
    tail of the output, and how the RSS was measured (GNU time -v, else wait4's rusage of that child)."""
    out_path, err_path = log_prefix + ".out", log_prefix + ".err"
    use_time = os.access(TIME_BIN, os.X_OK)
    time_path = log_prefix + ".time"
    full = [TIME_BIN, "-v", "-o", time_path] + cmd if use_time else cmd
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    res = {"cmd": cmd, "rc": p.returncode, "wall_s": round(wall, 3), "peak_rss_kib": usage.ru_maxrss,
           "rss_source": "wait4"}
    if use_time:
        res["rss_source"] = "/usr/bin/time -v"
        try:
            with open(time_path) as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("Maximum resident set size"):
                        res["peak_rss_kib"] = int(line.rsplit(":", 1)[1])
                    elif line.startswith("Exit status:"):
                        res["rc"] = int(line.rsplit(":", 1)[1])
                    elif line.startswith("Command terminated by signal"):
                        res["rc"] = -int(line.rsplit(" ", 1)[1])
        except (OSError, ValueError):
            pass
    res["stdout"] = _tail(out_path)
    res["stderr"] = _tail(err_path)
    return res


def best_run(runs):
    """The fastest of several runs of one command, with the largest peak RSS among them and every
    run's wall time and peak RSS (mrepo-bench's convention). A failed run is reported as is."""
    if not runs:
        return {}
    failed = [r for r in runs if r["rc"] != 0]
    if failed:
        return failed[0]
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["peak_rss_kib"] = max(r["peak_rss_kib"] for r in runs)
    if len(runs) > 1:
        best["runs"] = [{"wall_s": r["wall_s"], "peak_rss_kib": r["peak_rss_kib"]} for r in runs]
    return best


def settle(paths):
    """Syncs (no dirty pages for the next command to wait on) and reads every file under paths once."""
    os.sync()
    for top in paths:
        for root, _, files in os.walk(top):
            for f in files:
                try:
                    with open(os.path.join(root, f), "rb") as fh:
                        while fh.read(1 << 24):
                            pass
                except OSError:
                    pass


def _tail(path, limit=4000):
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    # Drop progress-bar lines.
    lines = [l for l in text.split("\n") if l.strip() and "it/s]" not in l and "s/it]" not in l]
    text = "\n".join(lines)
    return text[-limit:]


def must(res, what):
    if res["rc"] != 0:
        sys.exit(f"{what} failed (exit {res['rc']}):\n{res['stderr'] or res['stdout']}")
    return res


# --------------------------------------------------------------------------------------------------
# Tensors.


def load_dir(path):
    """Every tensor of the *.safetensors files directly in path: name -> torch tensor (CPU)."""
    tensors = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(path, f), framework="pt") as st:
                for k in st.keys():
                    tensors[k] = st.get_tensor(k)
    return tensors


def bits_equal(a, b):
    """Elementwise bit equality of two tensors of one dtype and shape (a bool tensor)."""
    if a.dtype == torch.bool:
        return a == b
    size = a.element_size()
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[size]
    return a.contiguous().view(ints) == b.contiguous().view(ints)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and bool(bits_equal(a, b).all())


def tie_cuts(recipe):
    """For the magnitude-trimming methods, a function (expert key, n) -> the cut positions in the
    ascending order of |tau| (mergekit's sparsify.magnitude / magnitude_outliers); None otherwise.
    An element whose |tau| equals the magnitudes on both sides of a cut may be kept or dropped
    depending on how the sort breaks ties (torch's argsort versus mrepo's earlier-position rule)."""
    method = recipe["merge_method"]
    if method not in ("ties", "breadcrumbs", "breadcrumbs_ties"):
        return None
    params = {m["model"]: m.get("parameters", {}) for m in recipe["models"]}

    def cuts(key, n):
        p = params.get(key, {})
        density = float(p.get("density", 1.0))
        if density >= 1:
            return []
        if method == "ties":
            return [n - max(1, int(density * n))]
        target = int(density * n)
        n_bot = max(0, n - target - int(float(p.get("gamma", 0.01)) * n))
        return [n_bot, n_bot + target]

    return cuts


def at_ties(name, mask, inputs, cuts):
    """How many of the elements in mask (bool, flattened) sit on a tied cut of some expert's |tau|."""
    base = inputs["base"][name].reshape(-1).float()
    hit = torch.zeros_like(mask)
    for key, t in inputs.items():
        if key == "base" or name not in t:
            continue
        mag = (t[name].reshape(-1).float() - base).abs()
        n = mag.numel()
        s = None
        for c in cuts(key, n):
            if 0 < c < n:
                if s is None:
                    s = torch.sort(mag).values
                if s[c - 1] == s[c]:
                    hit |= mag == s[c]
    return int((hit & mask).sum())


def compare(mrepo_dir, mk_dir, inputs, cuts=None):
    a_all, b_all = load_dir(mrepo_dir), load_dir(mk_dir)
    names = sorted(set(a_all) | set(b_all))
    rows = []
    tot_el = tot_ident = 0
    max_abs_all = 0.0
    max_ref_all = 0.0
    for n in names:
        a, b = a_all.get(n), b_all.get(n)
        row = {"tensor": n}
        if a is None or b is None:
            row["presence"] = "only_mergekit" if a is None else "only_mrepo"
            rows.append(row)
            continue
        row["presence"] = "both"
        row["dtype"] = [str(a.dtype).replace("torch.", ""), str(b.dtype).replace("torch.", "")]
        row["shape"] = [list(a.shape), list(b.shape)]
        if a.shape != b.shape:
            row["max_abs"] = row["max_rel"] = float("inf")
            rows.append(row)
            continue
        numel = a.numel()
        if a.dtype == b.dtype:
            ident = int(bits_equal(a, b).sum())
        else:
            ident = int((a.double() == b.double()).sum())
        ad, bd = a.double(), b.double()
        diff = (ad - bd).abs()
        max_abs = float(diff.max()) if numel else 0.0
        ref = float(bd.abs().max()) if numel else 0.0
        rel = max_abs / ref if ref > 0 else (0.0 if max_abs == 0 else float("inf"))
        row.update({"numel": numel, "identical": ident, "max_abs": max_abs, "max_ref": ref, "max_rel": rel})
        if ident != numel:
            row["mean_abs"] = float(diff.mean())
            if ad.is_floating_point():
                eps = torch.finfo(b.dtype).eps if b.is_floating_point() else 0.0
                beyond = diff > 4 * eps * torch.maximum(ad.abs(), bd.abs())
                row["differ_beyond_4ulp"] = int(beyond.sum())
                if cuts is not None and n in inputs.get("base", {}):
                    row["differ_at_topk_ties"] = at_ties(n, (diff > 0).reshape(-1), inputs, cuts)
            row["mrepo_equals"] = [k for k, t in inputs.items() if n in t and same_bits(a, t[n])]
            row["mergekit_equals"] = [k for k, t in inputs.items() if n in t and same_bits(b, t[n])]
        tot_el += numel
        tot_ident += ident
        max_abs_all = max(max_abs_all, max_abs)
        if b.is_floating_point():  # an integer tensor (position_ids) is no scale for the weights
            max_ref_all = max(max_ref_all, ref)
        rows.append(row)
    both = [r for r in rows if r["presence"] == "both"]
    summary = {
        "tensors_mrepo": len(a_all),
        "tensors_mergekit": len(b_all),
        "only_mrepo": [r["tensor"] for r in rows if r["presence"] == "only_mrepo"],
        "only_mergekit": [r["tensor"] for r in rows if r["presence"] == "only_mergekit"],
        "dtype_mismatch": [r["tensor"] for r in both if r["dtype"][0] != r["dtype"][1]],
        "shape_mismatch": [r["tensor"] for r in both if r["shape"][0] != r["shape"][1]],
        "tensors_bit_identical": sum(1 for r in both if r.get("identical") == r.get("numel")
                                     and r["dtype"][0] == r["dtype"][1]),
        "tensors_compared": len(both),
        "elements": tot_el,
        "elements_identical": tot_ident,
        "elements_beyond_4ulp": sum(r.get("differ_beyond_4ulp", 0) for r in both),
        "elements_at_topk_ties": sum(r.get("differ_at_topk_ties", 0) for r in both) if cuts else None,
        "max_abs": max_abs_all,
        "max_rel": max((r["max_rel"] for r in both), default=0.0),
        "max_abs_over_max_ref": (max_abs_all / max_ref_all) if max_ref_all > 0 else 0.0,
    }
    worst = sorted((r for r in both if r.get("max_rel", 0) > 0), key=lambda r: -r["max_rel"])
    summary["worst"] = [r["tensor"] for r in worst[:5]]
    return summary, rows


# --------------------------------------------------------------------------------------------------


def fmt_rss(kib):
    return f"{kib / 1024:.0f} MiB" if kib else "?"


def fmt_g(x):
    if x is None:
        return "-"
    if x == float("inf"):
        return "inf"
    return f"{x:.3g}"


def print_recipe(res, top):
    print(f"\n=== {res['name']}: {res['about']}")
    mk, mr = res.get("mergekit", {}), res.get("mrepo_merge", {})
    if mk:
        print(f"  mergekit: exit {mk['rc']}, {mk['wall_s']:.1f} s, peak {fmt_rss(mk['peak_rss_kib'])}")
    if mr:
        print(f"  mrepo merge: exit {mr['rc']}, {mr['wall_s']:.1f} s, peak {fmt_rss(mr['peak_rss_kib'])}"
              + (f"; export {res['mrepo_export']['wall_s']:.1f} s" if "mrepo_export" in res else ""))
    if res.get("mrepo_outcome"):
        print(f"  mrepo said: {res['mrepo_outcome']}")
    if res.get("error"):
        print("  ERROR: " + res["error"].strip().replace("\n", "\n         "))
    s = res.get("summary")
    if not s:
        return
    pct = 100.0 * s["elements_identical"] / s["elements"] if s["elements"] else 100.0
    print(f"  tensors: mrepo {s['tensors_mrepo']}, mergekit {s['tensors_mergekit']}, bit-identical "
          f"{s['tensors_bit_identical']}/{s['tensors_compared']}; elements identical {pct:.2f}% "
          f"(differing: {s['elements'] - s['elements_identical']}, beyond 4 ulp {s['elements_beyond_4ulp']}"
          + ("" if s["elements_at_topk_ties"] is None else f", on a tied top-k cut {s['elements_at_topk_ties']}")
          + f"); "
          f"max abs {fmt_g(s['max_abs'])}; max rel {fmt_g(s['max_rel'])} (per tensor), "
          f"{fmt_g(s['max_abs_over_max_ref'])} (max abs / max |b| of all float tensors)")
    for key in ("only_mrepo", "only_mergekit", "dtype_mismatch", "shape_mismatch"):
        if s[key]:
            print(f"  {key}: {', '.join(s[key])}")
    files = res.get("files", {})
    if files.get("both_differ"):
        print(f"  files in both outputs that differ: {', '.join(files['both_differ'])}")
    rows = [r for r in res["tensors"] if r["presence"] == "both" and r.get("max_rel", 0) > 0]
    rows.sort(key=lambda r: -r["max_rel"])
    if not rows:
        return
    print(f"  {'tensor (worst first)':<50} {'shape':>10} {'differ':>8} {'>4ulp':>8} {'at tie':>8} "
          f"{'max abs':>9} {'max rel':>9}  mrepo = input")
    for r in rows[:top]:
        shape = "x".join(map(str, r["shape"][0]))
        eq = ",".join(r.get("mrepo_equals", [])) or "-"
        tie = r.get("differ_at_topk_ties")
        print(f"  {r['tensor']:<50} {shape:>10} {r['numel'] - r['identical']:>8} {r.get('differ_beyond_4ulp', 0):>8} "
              f"{'-' if tie is None else tie:>8} {fmt_g(r['max_abs']):>9} {fmt_g(r['max_rel']):>9}  {eq}")
    if len(rows) > top:
        print(f"  ... {len(rows) - top} more differing tensors (all in the JSON)")


def print_summary(results):
    print("\n=== summary (a = mrepo, b = mergekit; rel = max|a-b| / max|b| per tensor, worst tensor)")
    print(f"{'recipe':<24} {'mrepo':<8} {'identical':>10} {'max rel':>9} {'mk s':>6} {'mk MiB':>7} "
          f"{'mr s':>6} {'mr MiB':>7}  worst tensor")
    for r in results:
        s = r.get("summary")
        mk, mr = r.get("mergekit", {}), r.get("mrepo_merge", {})
        status = "ok" if s else ("FAILED" if mr and mr.get("rc") else "-")
        if s and s["tensors_bit_identical"] == s["tensors_compared"] and not (s["only_mrepo"] or s["only_mergekit"]):
            status = "exact"
        ident = f"{s['tensors_bit_identical']}/{s['tensors_compared']}" if s else "-"
        print(f"{r['name']:<24} {status:<8} {ident:>10} {fmt_g(s['max_rel']) if s else '-':>9} "
              f"{mk.get('wall_s', 0):6.1f} {mk.get('peak_rss_kib', 0) / 1024:7.0f} "
              f"{mr.get('wall_s', 0):6.1f} {mr.get('peak_rss_kib', 0) / 1024:7.0f}  "
              f"{(s['worst'][0] if s and s['worst'] else '')}")


# --------------------------------------------------------------------------------------------------


def patch_mergekit():
    """mergekit 0.1.5: `[w_in.name] + (w_in.aliases or [])` raises TypeError for BERT (aliases is a
    tuple). Patch the installed plan.py of this venv in place, once; never part of mrepo's repository."""
    import mergekit

    path = os.path.join(os.path.dirname(mergekit.__file__), "plan.py")
    old, new = "[w_in.name] + (w_in.aliases or [])", "[w_in.name] + list(w_in.aliases or [])"
    with open(path) as f:
        text = f.read()
    if old in text:
        with open(path, "w") as f:
            f.write(text.replace(old, new))
        print(f"patched {path}: aliases tuple concatenation (BERT)")


def mergekit_version():
    try:
        from importlib.metadata import version

        return version("mergekit")
    except Exception:
        return "?"


def default_mrepo():
    main = "/work/main/.build/debug/mrepo"
    if os.path.exists(main):
        return main
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "debug", "mrepo")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mrepo", default=default_mrepo(), help="mrepo binary (default %(default)s)")
    ap.add_argument("--data", default=os.path.expanduser("~/.cache/mrepo-realdata"),
                    help="folder with base/, ft_code/, ft_prose/, ft_c/ (default %(default)s)")
    ap.add_argument("--mergekit-yaml", default=os.path.join(os.path.dirname(sys.executable), "mergekit-yaml"),
                    help="mergekit-yaml of the venv (default: next to this Python)")
    ap.add_argument("--work", help="scratch folder (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder and both outputs")
    ap.add_argument("--json", help="write the summary as JSON here")
    ap.add_argument("--only", help="comma-separated recipe names to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the recipes and exit")
    ap.add_argument("--top", type=int, default=8, help="differing tensors printed per recipe")
    ap.add_argument("--no-patch", action="store_true", help="do not patch mergekit's plan.py")
    ap.add_argument("--timing-only", action="store_true",
                    help="only time both tools (wall time, peak RSS): no export, no comparison (mrepo-bench's mergekit section)")
    ap.add_argument("--warm-repo", action="store_true",
                    help="time repeated merges: every run in the same repository, so runs after the first find "
                         "their results already stored (default: each run on a fresh copy, a first merge)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each tool this many times per recipe; the fastest run counts (default %(default)s)")
    args = ap.parse_args()
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")

    if args.list:
        for r in RECIPES:
            print(f"{r['name']:<24} {r['about']}")
        return
    recipes = RECIPES
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {r["name"] for r in RECIPES}
        if unknown:
            sys.exit(f"unknown recipes: {', '.join(sorted(unknown))}")
        recipes = [r for r in RECIPES if r["name"] in wanted]

    mrepo = os.path.abspath(args.mrepo)
    if not os.access(mrepo, os.X_OK):
        sys.exit(f"no mrepo binary at {mrepo} (build it with swift build, or pass --mrepo)")
    for key, (folder, _) in MODELS.items():
        if not os.path.exists(os.path.join(args.data, folder, "model.safetensors")):
            sys.exit(f"missing {os.path.join(args.data, folder, 'model.safetensors')}")
    if not args.no_patch:
        patch_mergekit()

    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="mrepo-parity-")
    os.makedirs(work, exist_ok=True)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    repo = os.path.join(work, "repo")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="", MREPO_AUTHOR="parity <parity@localhost>")
    print(f"work folder {work}; mrepo {mrepo}; mergekit {mergekit_version()}; torch {torch.__version__}")

    def mr(*a, log):
        return run([mrepo, *a], os.path.join(logs, log), env=env)

    # 1. The scratch repository.
    setup = {}
    if os.path.exists(repo):
        shutil.rmtree(repo)
    must(mr("init", repo, "-q", log="init"), "mrepo init")
    setup["commit_base"] = must(mr("commit", "-C", repo, "-q", "--from", os.path.join(args.data, "base"),
                                   "-m", "base", log="commit-base"), "mrepo commit base")
    for key in THREE:
        folder, branch = MODELS[key]
        must(mr("switch", "-C", repo, "-q", "-c", branch, "main", log=f"switch-{branch}"), f"switch -c {branch}")
        setup[f"commit_{branch}"] = must(mr("commit", "-C", repo, "-q", "--from", os.path.join(args.data, folder),
                                            "-m", branch, log=f"commit-{branch}"), f"mrepo commit {branch}")
        must(mr("switch", "-C", repo, "-q", "main", log="switch-main"), "switch main")
    for k, v in setup.items():
        print(f"{k}: {v['wall_s']:.1f} s, peak {fmt_rss(v['peak_rss_kib'])}")
    # Every merge is timed as a user's first merge of its recipe: each run starts from a copy of the
    # repository as it stands now (the four models, no merge result stored), so no run finds the
    # results of an earlier one in the store (--warm-repo times repeated merges instead).
    pristine = os.path.join(work, "repo-pristine")
    if os.path.exists(pristine):
        shutil.rmtree(pristine)
    shutil.copytree(repo, pristine, symlinks=True)

    def fresh_repo():
        if not args.warm_repo:
            shutil.rmtree(repo)
            shutil.copytree(pristine, repo, symlinks=True)

    # Only the comparison needs the inputs in memory.
    inputs = {} if args.timing_only else {k: load_dir(os.path.join(args.data, folder)) for k, (folder, _) in MODELS.items()}

    results = []
    for rec in recipes:
        name = rec["name"]
        rdir = os.path.join(work, name)
        if os.path.exists(rdir):
            shutil.rmtree(rdir)
        os.makedirs(rdir)
        mk_yaml = render(rec["recipe"], lambda k: os.path.join(args.data, MODELS[k][0]))
        mr_yaml = render(rec["recipe"], lambda k: MODELS[k][1])
        mk_file, mr_file = os.path.join(rdir, "mergekit.yml"), os.path.join(rdir, "mrepo.yml")
        with open(mk_file, "w") as f:
            f.write(mk_yaml)
        with open(mr_file, "w") as f:
            f.write(mr_yaml)
        res = {"name": name, "about": rec["about"], "mergekit_recipe": mk_yaml, "mrepo_recipe": mr_yaml,
               "start": rec["start"]}
        mk_out, mr_out = os.path.join(rdir, "mergekit-out"), os.path.join(rdir, "mrepo-out")
        errors = []
        # Each tool runs --repeat times after a sync and a warm read of its inputs; the fastest run
        # counts (with the largest peak RSS of all runs), as in mrepo-bench.
        mk_runs = []
        for attempt in range(args.repeat):
            print(f"\n--- {name}: running mergekit" + (f" ({attempt + 1}/{args.repeat})" if args.repeat > 1 else ""), flush=True)
            shutil.rmtree(mk_out, ignore_errors=True)
            settle([os.path.join(args.data, MODELS[k][0]) for k in MODELS])
            mk = run([args.mergekit_yaml, mk_file, mk_out, "--copy-tokenizer", "--no-cuda"],
                     os.path.join(rdir, "mergekit" + (f"-{attempt}" if attempt else "")), env=env)
            mk_runs.append(mk)
            if mk["rc"] != 0:
                errors.append(f"mergekit failed (exit {mk['rc']}): {last_lines(mk['stderr'] or mk['stdout'])}")
                break
        mk = res["mergekit"] = best_run(mk_runs)

        mr_runs = []
        for attempt in range(args.repeat):
            print(f"--- {name}: running mrepo merge" + (f" ({attempt + 1}/{args.repeat})" if args.repeat > 1 else ""), flush=True)
            branch = f"parity-{name}" + (f"-{attempt}" if attempt else "")
            fresh_repo()
            mr("switch", "-C", repo, "-q", "-f", "main", log=f"{name}-back")
            sw = mr("switch", "-C", repo, "-q", "-c", branch, rec["start"], log=f"{name}-switch")
            if sw["rc"] != 0:
                errors.append(f"mrepo switch -c {branch} failed: {last_lines(sw['stderr'])}")
                break
            before = rev_parse(mr, repo, "HEAD", name)
            settle([os.path.join(repo, ".mrepo", "objects")])
            m = mr("merge", "-C", repo, "--config", mr_file, log=f"{name}-merge")
            mr_runs.append(m)
            res["mrepo_outcome"] = outcome(m)
            res["mrepo_head"] = {"before": before, "after": rev_parse(mr, repo, "HEAD", name)}
            if m["rc"] != 0:
                errors.append(f"mrepo merge failed (exit {m['rc']}): {last_lines(m['stderr'] or m['stdout'])}")
                mr("merge", "-C", repo, "-q", "--abort", log=f"{name}-abort")
                break
            if attempt == args.repeat - 1 and not args.timing_only:
                ex = mr("export", "-C", repo, "-q", "HEAD", mr_out, log=f"{name}-export")
                res["mrepo_export"] = ex
                if ex["rc"] != 0:
                    errors.append(f"mrepo export failed (exit {ex['rc']}): {last_lines(ex['stderr'])}")
        if mr_runs:
            res["mrepo_merge"] = best_run(mr_runs)
        mr("switch", "-C", repo, "-q", "-f", "main", log=f"{name}-back2")

        if not args.timing_only and mk["rc"] == 0 and os.path.isdir(mr_out) and not any(e.startswith("mrepo export") for e in errors):
            try:
                res["summary"], res["tensors"] = compare(mr_out, mk_out, inputs, tie_cuts(rec["recipe"]))
                res["files"] = compare_files(mr_out, mk_out)
            except Exception as e:  # keep going: record it
                errors.append(f"comparison failed: {type(e).__name__}: {e}")
        if errors:
            res["error"] = "\n".join(errors)
        print_recipe(res, args.top)
        results.append(res)
        if not args.keep:
            shutil.rmtree(rdir, ignore_errors=True)

    print_summary(results)
    if args.json:
        doc = {
            "mrepo": mrepo,
            "mrepo_version": run([mrepo, "--version"], os.path.join(logs, "version"))["stdout"].strip(),
            "mergekit_version": mergekit_version(),
            "torch_version": torch.__version__,
            "data": args.data,
            "setup": setup,
            "timing_only": args.timing_only,
            "repeat": args.repeat,
            "recipes": results,
        }
        with open(args.json, "w") as f:
            json.dump(finite(doc), f, indent=1, default=str, allow_nan=False)
        print(f"\nJSON: {args.json}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")


def compare_files(mr_out, mk_out):
    """The two outputs' top-level files, and which non-tensor files both have but differ."""
    a, b = set(os.listdir(mr_out)), set(os.listdir(mk_out))
    differ = []
    for f in sorted(a & b):
        pa, pb = os.path.join(mr_out, f), os.path.join(mk_out, f)
        if f.endswith(".safetensors") or f == "README.md" or not (os.path.isfile(pa) and os.path.isfile(pb)):
            continue
        with open(pa, "rb") as fa, open(pb, "rb") as fb:
            if fa.read() != fb.read():
                differ.append(f)
    return {"only_mrepo": sorted(a - b), "only_mergekit": sorted(b - a), "both_differ": differ}


def finite(obj):
    """JSON without Infinity/NaN literals: non-finite floats become strings."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def last_lines(text, n=6):
    return "\n".join(text.strip().split("\n")[-n:])


def rev_parse(mr, repo, rev, name):
    r = mr("log", "-C", repo, "-n", "1", "--oneline", rev, log=f"{name}-revparse")
    return r["stdout"].strip().split("\n")[0] if r["rc"] == 0 else None


def outcome(m):
    """The lines of mrepo merge's output that say what it did (fast-forward, classes, the commit)."""
    keep = []
    for line in (m["stdout"] + "\n" + m["stderr"]).split("\n"):
        low = line.lower()
        if any(w in low for w in ("fast-forward", "already up to date", "unchanged,", "merge made", "merge base",
                                  "error", "stopped", "experts")):
            keep.append(line.strip())
    return " | ".join(keep)[:600]


if __name__ == "__main__":
    main()
