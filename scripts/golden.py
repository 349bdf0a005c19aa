#!/usr/bin/env python3
"""Golden numbers from the real mergekit for mrepo's merge-method tests.

NOT RUN IN CI. The JSON files it writes are committed under Tests/MergeTests/Golden/ and read by
Tests/MergeTests/GoldenTests.swift; rerun this script only to regenerate them.

Needs Python with torch and mergekit, e.g. (the venv used when the files were generated):

    /root/.cache/mrepo-realdata/venv/bin/pip install mergekit       # 0.1.5 at generation time
    /root/.cache/mrepo-realdata/venv/bin/python scripts/golden.py

How mergekit is called: through its in-memory API, one logical tensor at a time,

    mergekit.merge_methods.api.merge_tensors(
        [base, expert_1, ..., expert_n], METHOD_ID,
        parameters={...}, base_index=0, dtype=torch.float32)

for every method that takes a base (task_arithmetic, ties, breadcrumbs, breadcrumbs_ties, slerp,
model_stock), and merge_tensors([expert_1, ..., expert_n], "linear", parameters={"weight": [...]},
dtype=torch.float32) for linear. This runs mergekit's real merge-method code (the generalized task
arithmetic with its sparsifiers and sign election, slerp, model_stock, linear) in float32, without
loading model files. Per-expert parameters are passed as a dict keyed by input index, so the base
(index 0) has none. For slerp, the first expert in the JSON is mergekit's base (t = 0) and the second
the other model (t = 1), which is mrepo's order too.

Inputs: fixed torch seed, float32, shapes 8x16 and 64. Experts are base + a shared direction + an
individual one, all of unit-ish scale, so task vectors are comparable in size to the weights and
partly aligned (model_stock's t is away from 0 and 1, TIES elections see real conflicts).
The script asserts the task vectors have no tied magnitudes, so top-k masks are unambiguous here;
tied magnitudes (which elements torch's sort keeps) are covered by scripts/golden_ties.py.

Each case is one line of the JSON file. Every float is written as Python's repr of the float32
value widened to float64, which Swift reads back to the same Float bit pattern.

mergekit 0.1.5 versus the 0.1.4 the reference spec describes, for these methods: magnitude keeps
max(1, floor(density*n)) (0.1.4 asserted k > 0); magnitude_outliers keeps I[n_bot : n_bot + target]
(0.1.4's I[n_bot:-n_top] zeroed everything when n_top == 0); model_stock keeps the base where
1 + (N-1)*cos is within 1e-6 of 0. None of these cases reaches those edges.
"""

import json
import os
import sys

import torch

import mergekit
from mergekit.merge_methods.api import merge_tensors

SEED = 20240601
SHAPES = [[8, 16], [64]]
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "MergeTests", "Golden")


def mergekit_version() -> str:
    try:
        from importlib.metadata import version

        return version("mergekit")
    except Exception:  # pragma: no cover
        return getattr(mergekit, "__version__", "unknown")


def make_inputs(gen: torch.Generator, shape, experts: int):
    base = torch.randn(shape, generator=gen, dtype=torch.float32)
    shared = torch.randn(shape, generator=gen, dtype=torch.float32)
    models = []
    for _ in range(experts):
        own = torch.randn(shape, generator=gen, dtype=torch.float32)
        models.append((base + 0.4 * shared + 0.6 * own).to(torch.float32))
    for m in models:
        mags = (m - base).abs().reshape(-1)
        assert mags.unique().numel() == mags.numel(), "tied task-vector magnitudes; change SEED"
    return base, models


def flat(t: torch.Tensor):
    return [float(x) for x in t.reshape(-1).tolist()]


def run_case(name, method, shape, base, experts, global_params, expert_params, uses_base=True):
    """Calls mergekit and returns one JSON case."""
    params = dict(global_params)
    keys = sorted({k for p in expert_params for k in p})
    for key in keys:
        if uses_base:
            params[key] = {i + 1: p[key] for i, p in enumerate(expert_params)}
        else:
            params[key] = [p[key] for p in expert_params]
    if uses_base:
        out = merge_tensors([base] + experts, method, parameters=params, base_index=0, dtype=torch.float32)
        call = f"merge_tensors([base] + experts, {method!r}, parameters=P, base_index=0, dtype=torch.float32)"
    else:
        out = merge_tensors(experts, method, parameters=params, dtype=torch.float32)
        call = f"merge_tensors(experts, {method!r}, parameters=P, dtype=torch.float32)"
    assert out.dtype == torch.float32 and list(out.shape) == shape
    return {
        "name": name,
        "method": method,
        "shape": shape,
        "call": call,
        "parameters": {"global": global_params, "experts": expert_params},
        "base": flat(base) if uses_base else None,
        "experts": [flat(e) for e in experts],
        "output": flat(out),
    }


def main():
    gen = torch.Generator().manual_seed(SEED)
    weights3 = [1.0, 0.5, 0.75]
    files = {}

    def add(method, case):
        files.setdefault(method, []).append(case)

    for shape in SHAPES:
        tag = "x".join(map(str, shape))
        base, experts = make_inputs(gen, shape, 3)

        add("linear", run_case(f"linear {tag} weights {weights3}", "linear", shape, base, experts,
                               {}, [{"weight": w} for w in weights3], uses_base=False))
        add("linear", run_case(f"linear {tag} normalize=false", "linear", shape, base, experts[:2],
                               {"normalize": False}, [{"weight": 0.3}, {"weight": 0.9}], uses_base=False))

        add("task_arithmetic", run_case(f"task_arithmetic {tag} lambda=1", "task_arithmetic", shape, base, experts,
                                        {}, [{"weight": w} for w in weights3]))
        add("task_arithmetic", run_case(f"task_arithmetic {tag} lambda=0.5", "task_arithmetic", shape, base, experts,
                                        {"lambda": 0.5}, [{"weight": w} for w in weights3]))
        add("task_arithmetic", run_case(f"task_arithmetic {tag} normalize=true, negative weight", "task_arithmetic",
                                        shape, base, experts, {"normalize": True},
                                        [{"weight": 1.0}, {"weight": -0.25}, {"weight": 0.5}]))

        for density in (0.5, 1.0):
            add("ties", run_case(f"ties {tag} density={density}", "ties", shape, base, experts,
                                 {}, [{"weight": w, "density": density} for w in weights3]))
        add("ties", run_case(f"ties {tag} density=0.5 normalize=false lambda=0.7", "ties", shape, base, experts,
                             {"normalize": False, "lambda": 0.7},
                             [{"weight": w, "density": 0.5} for w in weights3]))
        add("ties", run_case(f"ties {tag} densities 0.3/0.6/0.9 rescale=true", "ties", shape, base, experts,
                             {"rescale": True},
                             [{"weight": w, "density": d} for w, d in zip(weights3, (0.3, 0.6, 0.9))]))

        add("breadcrumbs", run_case(f"breadcrumbs {tag} density=0.8 gamma=0.1", "breadcrumbs", shape, base, experts,
                                    {}, [{"weight": w, "density": 0.8, "gamma": 0.1} for w in weights3]))
        add("breadcrumbs", run_case(f"breadcrumbs_ties {tag} density=0.8 gamma=0.1", "breadcrumbs_ties", shape, base,
                                    experts, {}, [{"weight": w, "density": 0.8, "gamma": 0.1} for w in weights3]))

        add("slerp", slerp_case(f"slerp {tag} t=0.3", shape, experts[0], experts[1], 0.3))
        add("slerp", slerp_case(f"slerp {tag} t=0.75", shape, base, experts[2], 0.75))

        add("model_stock", run_case(f"model_stock {tag} (base + 3)", "model_stock", shape, base, experts, {}, [{}, {}, {}]))
        add("model_stock", run_case(f"model_stock {tag} (base + 2)", "model_stock", shape, base, experts[:2], {}, [{}, {}]))
        if len(shape) == 2:
            add("model_stock", run_case(f"model_stock {tag} filter_wise", "model_stock", shape, base, experts,
                                        {"filter_wise": True}, [{}, {}, {}]))

    os.makedirs(OUT_DIR, exist_ok=True)
    version = mergekit_version()
    for method, cases in files.items():
        doc = {
            "generator": "scripts/golden.py",
            "mergekit_version": version,
            "torch_version": torch.__version__,
            "seed": SEED,
            "dtype": "float32",
            "method": method,
            "cases": cases,
        }
        path = os.path.join(OUT_DIR, f"{method}.json")
        # One line per case keeps the files small and their diffs readable.
        header = {k: v for k, v in doc.items() if k != "cases"}
        lines = json.dumps(header, indent=1)[:-2] + ',\n "cases": [\n'
        lines += ",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in cases)
        lines += "\n ]\n}\n"
        json.loads(lines)
        with open(path, "w") as f:
            f.write(lines)
        print(f"wrote {os.path.relpath(path)}: {len(cases)} cases (mergekit {version})")


def slerp_case(name, shape, v0, v1, t):
    """slerp between two models: mergekit's base input (index 0) is v0, the t = 0 end."""
    out = merge_tensors([v0, v1], "slerp", parameters={"t": t}, base_index=0, dtype=torch.float32)
    assert out.dtype == torch.float32 and list(out.shape) == shape
    return {
        "name": name,
        "method": "slerp",
        "shape": shape,
        "call": "merge_tensors([v0, v1], 'slerp', parameters={'t': T}, base_index=0, dtype=torch.float32)",
        "parameters": {"global": {"t": t}, "experts": [{}, {}]},
        "base": None,
        "experts": [flat(v0), flat(v1)],
        "output": flat(out),
    }


if __name__ == "__main__":
    sys.exit(main())
