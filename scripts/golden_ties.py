#!/usr/bin/env python3
"""Golden numbers for magnitude ties: torch's sort order and mergekit's TIES/Breadcrumbs on tied task vectors.

NOT RUN IN CI. The JSON files it writes are committed under Tests/MergeTests/Golden/ and read by
Tests/MergeTests/TorchSortOrderTests.swift (ties_order.json) and Tests/MergeTests/GoldenTests.swift
(tied_magnitudes.json); rerun this script only to regenerate them.

Needs Python with torch and mergekit (the sibling scripts/golden.py is imported for its helpers), and
g++ for the depth-limited cases, e.g. (the venv used when the files were generated):

    /root/.cache/mergekit-venv/bin/python scripts/golden_ties.py      # mergekit 0.1.5, torch 2.15.0

Why: mergekit keeps `torch.argsort(|d|, descending=True)[:k]` (magnitude, TIES) and
`torch.sort(|d|).indices[n_bot : n_bot + target]` (magnitude_outliers, Breadcrumbs). When magnitudes tie at
the threshold, which tied elements are kept is whatever torch's CPU sort does (libstdc++'s std::sort);
mrepo replays that sort (Sources/Merge/Kernels/TorchSortOrder.swift) and these files check it.

ties_order.json, per array (float32, few distinct magnitudes, +/- signs and -0.0 included):
- "table" and "codes": the values, codes[i] is a digit indexing table (compact for 20 000 elements);
- "descending" and "ascending": for torch.argsort(|x|, descending=True) and torch.sort(|x|).indices,
  "order" (the whole permutation, for arrays up to 1000 elements) and "prefix": {k: mask}, the set of
  indices in the first k positions as a hex string (hex digit i holds elements 4i..4i+3, bit 0 first).
- "depth_limited" (arrays up to 1000 elements, when g++ is found): libstdc++'s own introsort loop
  (std::__introsort_loop then std::__final_insertion_sort, the body of std::sort) run with depth
  limits 0..3 instead of 2*floor(log2 n), so the heap-sort fallback that torch reaches only on
  adversarial inputs is checked too: {"depth": d, "descending": bool, "order": [...]}.

tied_magnitudes.json: cases in scripts/golden.py's format (read by GoldenTests), from
mergekit.merge_methods.api.merge_tensors([base] + experts, METHOD, ...) in float32. Base values and task
vectors are multiples of 2^-8, so expert - base is exact and magnitudes tie in large groups. The script
asserts that every sparsification in every case splits a tie at a threshold and that keeping the earlier
indices among the tied elements would change the mask, so these cases fail unless torch's order is
reproduced.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden import OUT_DIR, mergekit_version, run_case  # noqa: E402

SEED = 20250917

CPP = r"""
#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>
// Reads n, depth, descending, then n floats; prints the sorted indices, one per line.
int main() {
  long n; long depth; int desc;
  if (scanf("%ld %ld %d", &n, &depth, &desc) != 3) return 1;
  std::vector<std::pair<float, long>> v(n);
  for (long i = 0; i < n; i++) { float x; if (scanf("%f", &x) != 1) return 1; v[i] = {x, i}; }
  auto comp = [desc](const std::pair<float, long>& a, const std::pair<float, long>& b) {
    return desc ? a.first > b.first : a.first < b.first;
  };
  auto c = __gnu_cxx::__ops::__iter_comp_iter(comp);
  if (n > 0) {
    std::__introsort_loop(v.begin(), v.end(), depth, c);
    std::__final_insertion_sort(v.begin(), v.end(), c);
  }
  for (auto& p : v) printf("%ld\n", p.second);
  return 0;
}
"""


def hex_mask(indices, n):
    bits = bytearray((n + 3) // 4)
    for i in indices:
        bits[i // 4] |= 1 << (i % 4)
    return "".join("0123456789abcdef"[b] for b in bits)


def make_array(gen, n, distinct):
    """Few distinct magnitudes with random signs; table entries are the signed values."""
    mags = (torch.randint(1, 50, (distinct,), generator=gen).float() / 16).tolist()
    mags[0] = 0.0
    table = []
    for m in mags:
        table += [m, -m]
    table = table[:10]
    codes = torch.randint(0, len(table), (n,), generator=gen)
    return [float(v) for v in table], "".join(str(int(c)) for c in codes)


def order_case(gen, n, distinct, cxx):
    table, codes = make_array(gen, n, distinct)
    x = torch.tensor([table[int(c)] for c in codes], dtype=torch.float32)
    w = x.abs().reshape(-1).float()
    ks = sorted({1, 2, n // 3, n // 2, (2 * n) // 3, n - 1} - {0, n}) if n > 2 else [1]
    case = {"n": n, "table": table, "codes": codes}
    for direction, idx in (("descending", torch.argsort(w, descending=True)),
                           ("ascending", torch.sort(w, descending=False).indices)):
        idx = idx.tolist()
        entry = {"prefix": {str(k): hex_mask(idx[:k], n) for k in ks}}
        if n <= 1000:
            entry["order"] = idx
        case[direction] = entry
    if cxx and n <= 1000:
        limited = []
        for depth in (0, 1, 2, 3):
            for desc in (True, False):
                text = f"{n} {depth} {int(desc)}\n" + "\n".join(repr(float(v)) for v in w.tolist()) + "\n"
                out = subprocess.run([cxx], input=text, capture_output=True, text=True, check=True).stdout
                limited.append({"depth": depth, "descending": desc, "order": [int(s) for s in out.split()]})
        # Sanity: with libstdc++'s own depth limit the driver reproduces torch.
        text = f"{n} {2 * (n.bit_length() - 1)} 1\n" + "\n".join(repr(float(v)) for v in w.tolist()) + "\n"
        out = subprocess.run([cxx], input=text, capture_output=True, text=True, check=True).stdout
        assert [int(s) for s in out.split()] == case["descending"]["order"], "std::sort driver disagrees with torch"
        case["depth_limited"] = limited
    return case


def compile_driver(tmp):
    gxx = shutil.which("g++")
    if gxx is None:
        print("g++ not found: no depth-limited cases", file=sys.stderr)
        return None
    src = os.path.join(tmp, "introsort.cpp")
    exe = os.path.join(tmp, "introsort")
    with open(src, "w") as f:
        f.write(CPP)
    subprocess.run([gxx, "-O2", "-o", exe, src], check=True)
    return exe


# ---- mergekit end to end -------------------------------------------------------------------------


def tied_inputs(gen, shape, experts, levels):
    """Base and experts on a 2^-8 grid; task vectors take `levels` magnitudes (times 2^-8), either sign."""
    base = (torch.randint(-512, 512, shape, generator=gen).float() / 256).to(torch.float32)
    models = []
    for _ in range(experts):
        mag = torch.randint(1, levels + 1, shape, generator=gen).float()
        sign = torch.randint(0, 2, shape, generator=gen).float() * 2 - 1
        zero = torch.rand(shape, generator=gen) < 0.1
        delta = torch.where(zero, torch.zeros_like(mag), mag * sign) / 256
        m = (base + delta).to(torch.float32)
        assert torch.equal(m - base, delta), "task vector not exact"
        models.append(m)
    return base, models


def check_ambiguous(method, base, experts, expert_params):
    """Every expert's sparsification splits a tie, and earlier-index-first would choose differently."""
    for m, p in zip(experts, expert_params):
        w = (m - base).abs().reshape(-1).float()
        n = w.numel()
        if method == "ties":
            k = max(1, int(p["density"] * n))
            idx = torch.argsort(w, descending=True)
            positional = sorted(range(n), key=lambda i: (-float(w[i]), i))[:k]
            torch_set = sorted(idx[:k].tolist())
            assert torch_set != sorted(positional), "positional rule agrees with torch"
        else:
            target = int(p["density"] * n)
            n_top = int(p["gamma"] * n)
            n_bot = max(0, n - target - n_top)
            idx = torch.sort(w).indices
            torch_set = sorted(idx[n_bot:n_bot + target].tolist())
            # Positional: mrepo's old rule, ties by index in the descending order.
            desc = sorted(range(n), key=lambda i: (-float(w[i]), i))
            positional = sorted(desc[n - n_bot - target:n - n_bot])
            assert torch_set != positional, "positional rule agrees with torch"


def main():
    gen = torch.Generator().manual_seed(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)
    version = mergekit_version()

    with tempfile.TemporaryDirectory() as tmp:
        cxx = compile_driver(tmp)
        arrays = []
        for n, distinct in ((7, 2), (16, 2), (17, 3), (33, 3), (100, 4), (1000, 5), (5000, 5), (20000, 5)):
            arrays.append(order_case(gen, n, distinct, cxx))
    doc = {
        "generator": "scripts/golden_ties.py",
        "torch_version": torch.__version__,
        "seed": SEED,
        "arrays": arrays,
    }
    path = os.path.join(OUT_DIR, "ties_order.json")
    lines = json.dumps({k: v for k, v in doc.items() if k != "arrays"}, indent=1)[:-2] + ',\n "arrays": [\n'
    lines += ",\n".join("  " + json.dumps(a, separators=(",", ":")) for a in arrays)
    lines += "\n ]\n}\n"
    json.loads(lines)
    with open(path, "w") as f:
        f.write(lines)
    print(f"wrote {os.path.relpath(path)}: {len(arrays)} arrays (torch {torch.__version__})")

    cases = []
    weights3 = [1.0, 0.5, 0.75]
    for shape, levels in (([16, 24], 6), ([100], 4)):
        tag = "x".join(map(str, shape))
        base, experts = tied_inputs(gen, shape, 3, levels)

        def add(name, method, global_params, expert_params):
            check_ambiguous(method, base, experts, expert_params)
            cases.append(run_case(name, method, shape, base, experts, global_params, expert_params))

        add(f"ties {tag} tied density=0.5", "ties", {}, [{"weight": w, "density": 0.5} for w in weights3])
        add(f"ties {tag} tied densities 0.3/0.45/0.7 rescale=true", "ties", {"rescale": True},
            [{"weight": w, "density": d} for w, d in zip(weights3, (0.3, 0.45, 0.7))])
        add(f"breadcrumbs {tag} tied density=0.5 gamma=0.1", "breadcrumbs", {},
            [{"weight": w, "density": 0.5, "gamma": 0.1} for w in weights3])
        add(f"breadcrumbs_ties {tag} tied density=0.6 gamma=0.05", "breadcrumbs_ties", {},
            [{"weight": w, "density": 0.6, "gamma": 0.05} for w in weights3])
    doc = {
        "generator": "scripts/golden_ties.py",
        "mergekit_version": version,
        "torch_version": torch.__version__,
        "seed": SEED,
        "dtype": "float32",
        "method": "tied_magnitudes",
        "cases": cases,
    }
    path = os.path.join(OUT_DIR, "tied_magnitudes.json")
    header = {k: v for k, v in doc.items() if k != "cases"}
    lines = json.dumps(header, indent=1)[:-2] + ',\n "cases": [\n'
    lines += ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in cases)
    lines += "\n ]\n}\n"
    json.loads(lines)
    with open(path, "w") as f:
        f.write(lines)
    print(f"wrote {os.path.relpath(path)}: {len(cases)} cases (mergekit {version})")


if __name__ == "__main__":
    sys.exit(main())
