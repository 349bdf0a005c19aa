#!/usr/bin/env python3
"""Reference vectors for mrepo's data-free subspace methods (tsv, iso_c, iso_cts, wudi, cart, pcb,
knots) and for --balance norm, computed with NumPy only, in float64, from the papers' formulas as
their official code applies them (written independently of mrepo's Swift code); and for the
data-driven methods that read committed statistics (fisher, regmean).

Writes Tests/MergeTests/Fixtures/subspace_methods.json (SubspaceMethodTests compares mrepo with it)
and Tests/MergeTests/Fixtures/data_methods.json (DataDrivenMethodTests).
Not run in CI: run it by hand after changing a method's semantics (python3 scripts/reference_methods.py).

Inputs are float32 values (the tensors mrepo merges), the outputs float64 from those values.
"""
import json
import os
import sys

import numpy as np

SEED = 20251205


def svd(a):
    return np.linalg.svd(a, full_matrices=False)


def polar(a):
    u, _, vt = svd(a)
    return u @ vt


# --- TSV-Merge (Gargiulo et al., CVPR 2025): the official code's layout, padded to p columns. ---
def tsv(taus, shape, lam=1.0, fraction=0.0):
    if len(shape) != 2:
        return lam * np.mean(taus, axis=0)
    t = len(taus)
    p = min(shape)
    share = fraction if fraction > 0 else 1.0 / t
    k = min(p, max(1, int(p * share)))
    cols = max(p, t * k)
    su = np.zeros((shape[0], cols))
    ss = np.zeros(cols)
    sv = np.zeros((cols, shape[1]))
    for i, tau in enumerate(taus):
        u, s, vt = svd(tau.reshape(shape))
        su[:, i * k:(i + 1) * k] = u[:, :k]
        ss[i * k:(i + 1) * k] = s[:k]
        sv[i * k:(i + 1) * k, :] = vt[:k, :]
    # Padding columns carry a zero singular value: the product does not see them.
    return lam * (polar(su) @ np.diag(ss) @ polar(sv)).reshape(-1)


# --- Iso-C and Iso-CTS (Marczak et al., ICML 2025), after the official code. ---
def iso_c(taus, shape, lam=1.0):
    if len(shape) != 2:
        return lam * np.mean(taus, axis=0)
    u, s, vt = svd(np.sum(taus, axis=0).reshape(shape))
    return lam * (u @ np.diag(np.full_like(s, s.mean())) @ vt).reshape(-1)


def iso_cts(taus, shape, lam=1.0, common_fraction=0.8):
    if len(shape) != 2:
        return lam * np.mean(taus, axis=0)
    t = len(taus)
    p = min(shape)
    c = int(p * common_fraction)
    d = round((p - c) / t)  # Python's round: half to even, as the official code
    if d * t > p:
        d = p // t
    c = p - d * t
    u, s, vt = svd(np.sum(taus, axis=0).reshape(shape))
    uc = u[:, :c]
    cu = np.zeros((shape[0], p))
    cs = np.zeros(p)
    cv = np.zeros((p, shape[1]))
    for i, tau in enumerate(taus):
        w = tau.reshape(shape)
        ut, st, vtt = svd(w - uc @ uc.T @ w)
        cu[:, i * d:(i + 1) * d] = ut[:, :d]
        cs[i * d:(i + 1) * d] = st[:d]
        cv[i * d:(i + 1) * d, :] = vtt[:d, :]
    cu[:, t * d:t * d + c] = uc
    cs[t * d:t * d + c] = s[:c]
    cv[t * d:t * d + c, :] = vt[:c, :]
    return lam * (polar(cu) @ np.diag(np.full(p, cs.mean())) @ polar(cv)).reshape(-1)


# --- WUDI (Cheng et al., ICML 2025): minimise sum_i ||(T - T_i) T_i^T||^2 / ||T_i||^2 from TA. ---
def wudi(taus, shape, lam=1.0, check=True):
    ta = np.sum(taus, axis=0)
    if len(shape) != 2:
        return lam * ta
    mats = [t.reshape(shape) for t in taus if np.any(t != 0)]
    ws = [1.0 / np.sum(m * m) for m in mats]
    g = sum(w * m.T @ m for w, m in zip(ws, mats))
    b = sum(w * m @ m.T @ m for w, m in zip(ws, mats))
    gp = np.linalg.pinv(g, rcond=1e-9, hermitian=True)
    t0 = ta.reshape(shape)
    merged = b @ gp + t0 @ (np.eye(shape[1]) - g @ gp)
    if check:
        # Gradient descent from task arithmetic reaches the same point (the paper optimises).
        x = t0.copy()
        step = 0.5 / np.linalg.eigvalsh(g).max()
        for _ in range(200000):
            grad = x @ g - b
            x -= step * grad
            if np.abs(grad).max() < 1e-13:
                break
        assert np.allclose(x, merged, atol=1e-9), "closed form and gradient descent disagree"
    return lam * merged.reshape(-1)


# --- CART (Choi et al., 2024): theta_avg + lam * sum_i LowRank_k(theta_i - theta_avg). ---
def cart(experts, shape, lam=1.0, rank_ratio=0.1):
    avg = np.mean(experts, axis=0)
    if len(shape) != 2:
        return avg
    p = min(shape)
    k = min(p, max(1, int(p * rank_ratio)))
    acc = np.zeros(shape)
    for e in experts:
        u, s, vt = svd((e - avg).reshape(shape))
        acc += u[:, :k] @ np.diag(s[:k]) @ vt[:k, :]
    return avg + lam * acc.reshape(-1)


# --- PCB-Merging (Du et al., NeurIPS 2024), after pcb-merging.py; flat minmax rows map to 1. ---
def minmax(x):
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    rng = hi - lo
    safe = np.where(rng > 0, rng, 1.0)
    return np.where(rng > 0, (x - lo) / safe, 1.0)


def clamp_rows(x, min_ratio, max_ratio):
    d = x.shape[1]
    s = np.sort(x, axis=1)
    lo = s[:, int(d * min_ratio)][:, None]
    hi = s[:, max(0, int(d * (1 - max_ratio) - 1))][:, None]
    return np.clip(x, lo, hi)


def pcb(taus, lam=1.0, ratio=0.1):
    t = np.array(taus)
    n, _ = t.shape
    tabs = clamp_rows(np.abs(t), 0.0001, 0.0001)
    tc = np.sign(t) * tabs
    intra = np.exp(n * minmax(tabs) ** 2)
    inter = np.tanh(t * t.sum(axis=0))
    score = intra * inter
    beta = minmax(clamp_rows(score, 1 - ratio, 0))
    return lam * (beta * tc).sum(axis=0) / np.maximum(beta.sum(axis=0), 1e-12)


# --- KnOTS (Stoica et al., ICLR 2025): SVD of [dW_1 | ... | dW_T], merge the V_i, U S V_merged. ---
def ties_combine(vs, weights, density):
    vs = [np.asarray(v, dtype=np.float64) for v in vs]
    count = vs[0].size
    keep = int(density * count)
    trimmed = []
    for w, v in zip(weights, vs):
        if keep >= count:
            trimmed.append(w * v)
        elif keep == 0:
            trimmed.append(np.zeros_like(v))
        else:
            thr = np.sort(np.abs(v))[::-1][keep - 1]
            trimmed.append(np.where(np.abs(v) >= thr, w * v, 0.0))
    stack = np.array(trimmed)
    total = stack.sum(axis=0)
    agree = np.where(total >= 0, stack > 0, stack < 0)
    acc = np.where(agree, stack, 0).sum(axis=0)
    div = (agree * np.array(weights)[:, None]).sum(axis=0)
    return acc / np.where(div == 0, 1, div)


def knots(taus, shape, lam=1.0, merge="ties", density=1.0, weights=None, rank=0):
    weights = weights or [1.0] * len(taus)

    def combine(vs):
        if merge == "ties":
            return ties_combine(vs, weights, density)
        return sum(w * v for w, v in zip(weights, vs))

    if len(shape) != 2:
        return lam * combine(taus)
    m, n = shape
    side = np.concatenate([t.reshape(shape) for t in taus], axis=1)
    u, s, vt = svd(side)
    r = int((s > s[0] * 1e-6).sum())
    if rank > 0:
        r = min(r, rank)
    coords = [vt[:r, i * n:(i + 1) * n].reshape(-1) for i in range(len(taus))]
    merged = combine(coords).reshape(r, n)
    return lam * (u[:, :r] @ np.diag(s[:r]) @ merged).reshape(-1)


def balanced(taus):
    norms = np.array([np.linalg.norm(t) for t in taus])
    moved = norms[norms > 0]
    target = moved.mean()
    return [t * (target / nm) if nm > 0 else t for t, nm in zip(taus, norms)]


# --- Fisher merging (Matena & Raffel 2022), FusionBench's options. ---
def fisher(experts, fishers, weights, normalize=True, eps=1e-6, file_norms=None):
    lam = np.array(weights, dtype=np.float64)
    if normalize:
        s = np.array([1.0 / (n + eps) for n in file_norms])
        lam = lam * s / s.sum()
    num = sum(l * (f + eps) * e for l, f, e in zip(lam, fishers, experts))
    den = sum(l * (f + eps) for l, f in zip(lam, fishers))
    return num / den


# --- RegMean (Jin et al. 2023): W* = (sum G~)^-1 sum G~ W^T, transposed, with np.linalg.solve. ---
def regmean(experts, grams, shape, alpha=0.9, counts=None):
    out_dim, in_dim = shape
    a = np.zeros((in_dim, in_dim))
    b = np.zeros((in_dim, out_dim))
    for i, (w, g) in enumerate(zip(experts, grams)):
        g = g.reshape(in_dim, in_dim)
        if counts is not None:
            g = g / counts[i]
        gt = alpha * g + (1 - alpha) * np.diag(np.diag(g))
        a += gt
        b += gt @ w.reshape(shape).T
    return np.linalg.solve(a, b).T.reshape(-1)


def data_methods(out_dir):
    rng = np.random.default_rng(SEED + 1)

    def f32(a):
        return np.asarray(a, dtype=np.float32).astype(np.float64)

    cases = []

    def add(name, method, shape, experts, output, stats, global_params=None, expert_params=None):
        cases.append({
            "name": name, "method": method, "shape": list(shape),
            "parameters": {"global": global_params or {}, "experts": expert_params or [{} for _ in experts]},
            "experts": [[float(x) for x in e] for e in experts],
            # Per expert: the statistics file's tensors (name -> values) and metadata.
            "statistics": stats,
            "output": [float(x) for x in output],
        })

    # Fisher: 3 experts, a 4x5 tensor, one expert's Fisher 100x louder; the file also holds another tensor.
    shape = (4, 5)
    experts = [f32(rng.standard_normal(20)) for _ in range(3)]
    fishers = [f32(np.abs(rng.standard_normal(20)) * s) for s in (1.0, 100.0, 0.5)]
    fishers[0][3] = 0.0
    others = [f32(np.abs(rng.standard_normal(6))) for _ in range(3)]
    norms = [np.sqrt(np.sum(f * f) + np.sum(o * o)) for f, o in zip(fishers, others)]
    stats = [{"kind": "fisher", "tensors": {"t.weight": [float(x) for x in f], "other.bias": [float(x) for x in o]},
              "shapes": {"t.weight": list(shape), "other.bias": [6]}, "metadata": {}} for f, o in zip(fishers, others)]
    add("fisher 4x5 normalize", "fisher", shape, experts, fisher(experts, fishers, [1, 1, 1], file_norms=norms), stats)
    add("fisher 4x5 plain", "fisher", shape, experts, fisher(experts, fishers, [1, 1, 1], normalize=False), stats,
        {"normalize": False})
    w = [1.0, 0.25, 2.0]
    add("fisher 4x5 weights eps=1e-3", "fisher", shape, experts,
        fisher(experts, fishers, w, eps=1e-3, file_norms=norms), stats, {"epsilon": 1e-3}, [{"weight": x} for x in w])

    # RegMean: 2 and 3 experts; Grams from random activations (X^T X), one with a count.
    for (out_dim, in_dim), k in [((5, 4), 2), ((3, 6), 3)]:
        shape = (out_dim, in_dim)
        experts = [f32(rng.standard_normal(out_dim * in_dim)) for _ in range(k)]
        counts = [int(rng.integers(8, 20)) for _ in range(k)]
        grams = []
        for c in counts:
            x = rng.standard_normal((c, in_dim)) * rng.uniform(0.5, 2.0, in_dim)
            grams.append(f32((x.T @ x).reshape(-1)))
        stats = [{"kind": "regmean", "tensors": {"t.weight.gram": [float(v) for v in g]}, "shapes": {"t.weight.gram": [in_dim, in_dim]},
                  "metadata": {"num_samples": str(c)}} for g, c in zip(grams, counts)]
        label = f"{out_dim}x{in_dim} K={k}"
        add(f"regmean {label}", "regmean", shape, experts, regmean(experts, grams, shape), stats)
        add(f"regmean {label} alpha=1", "regmean", shape, experts, regmean(experts, grams, shape, alpha=1.0), stats, {"alpha": 1.0})
        add(f"regmean {label} alpha=0.3 normalize", "regmean", shape, experts,
            regmean(experts, grams, shape, alpha=0.3, counts=counts), stats, {"alpha": 0.3, "normalize": True})
    # A tensor without a Gram (a bias): the plain average.
    experts = [f32(rng.standard_normal(5)) for _ in range(2)]
    stats = [{"kind": "regmean", "tensors": {}, "shapes": {}, "metadata": {"num_samples": "4"}} for _ in range(2)]
    add("regmean bias averaged", "regmean", (5,), experts, np.mean(experts, axis=0), stats)

    doc = {"generator": "scripts/reference_methods.py", "numpy_version": np.__version__, "seed": SEED + 1,
           "dtype": "float32 inputs, float64 reference", "cases": cases}
    out = os.path.join(out_dir, "data_methods.json")
    with open(out, "w") as f:
        f.write("{\n")
        items = [f' "{k}": {json.dumps(v)}' for k, v in doc.items() if k != "cases"]
        f.write(",\n".join(items) + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {len(cases)} cases to {os.path.relpath(out)}", file=sys.stderr)


def main():
    rng = np.random.default_rng(SEED)

    def f32(a):
        return np.asarray(a, dtype=np.float32).astype(np.float64)

    def low_rank(shape, rank, scale=1.0):
        return f32(scale * rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1])) / np.sqrt(rank))

    cases = []

    def add(name, method, shape, experts, base, output, global_params=None, expert_params=None, balance=None):
        case = {
            "name": name, "method": method, "shape": list(shape),
            "parameters": {"global": global_params or {}, "experts": expert_params or [{} for _ in experts]},
            "base": None if base is None else [float(x) for x in base],
            "experts": [[float(x) for x in e] for e in experts],
            "output": [float(x) for x in output],
        }
        if balance:
            case["balance"] = balance
        cases.append(case)

    def family(shape, count, scales=None):
        size = int(np.prod(shape))
        base = f32(rng.standard_normal(size))
        scales = scales or [1.0] * count
        taus = [f32(0.1 * s * rng.standard_normal(size)) for s in scales]
        experts = [f32(base + t) for t in taus]
        # The task vectors mrepo sees: expert − base, in float64 from the float32 values.
        return base, experts, [e - base for e in experts]

    for shape, count in [((6, 8), 2), ((9, 5), 3), ((7,), 3)]:
        base, experts, taus = family(shape, count)
        label = "x".join(map(str, shape))
        add(f"tsv {label} T={count}", "tsv", shape, experts, base, base + tsv(taus, shape))
        add(f"iso_c {label} T={count}", "iso_c", shape, experts, base, base + iso_c(taus, shape))
        add(f"iso_cts {label} T={count}", "iso_cts", shape, experts, base, base + iso_cts(taus, shape))
        add(f"wudi {label} T={count}", "wudi", shape, experts, base, base + wudi(taus, shape))
        add(f"cart {label} T={count}", "cart", shape, experts, None, cart(experts, shape))
        add(f"pcb {label} T={count}", "pcb", shape, experts, base, base + pcb(taus))
        add(f"knots {label} T={count}", "knots", shape, experts, base, base + knots(taus, shape))

    # Parameters away from their defaults.
    base, experts, taus = family((10, 12), 3)
    add("tsv 10x12 fraction=0.5 lambda=0.7", "tsv", (10, 12), experts, base, base + tsv(taus, (10, 12), lam=0.7, fraction=0.5),
        {"fraction": 0.5, "lambda": 0.7})
    add("iso_c 10x12 lambda=1.3", "iso_c", (10, 12), experts, base, base + iso_c(taus, (10, 12), lam=1.3), {"lambda": 1.3})
    add("iso_cts 10x12 common_fraction=0.5", "iso_cts", (10, 12), experts, base,
        base + iso_cts(taus, (10, 12), common_fraction=0.5), {"common_fraction": 0.5})
    add("cart 10x12 rank_ratio=0.3 lambda=0.5", "cart", (10, 12), experts, None, cart(experts, (10, 12), lam=0.5, rank_ratio=0.3),
        {"rank_ratio": 0.3, "lambda": 0.5})
    add("pcb 10x12 ratio=0.3 lambda=1.5", "pcb", (10, 12), experts, base, base + pcb(taus, lam=1.5, ratio=0.3),
        {"ratio": 0.3, "lambda": 1.5})
    weights = [1.0, 0.5, 0.75]
    add("knots 10x12 task_arithmetic weights", "knots", (10, 12), experts, base,
        base + knots(taus, (10, 12), merge="task_arithmetic", weights=weights), {"merge": "task_arithmetic"},
        [{"weight": w} for w in weights])
    add("knots 10x12 ties density=0.4 weights", "knots", (10, 12), experts, base,
        base + knots(taus, (10, 12), density=0.4, weights=weights), {"density": 0.4}, [{"weight": w} for w in weights])

    # WUDI where the stacked task vectors do not span the input space (the null-space part matters).
    shape = (3, 10)
    base = f32(rng.standard_normal(30))
    experts = [f32(base + 0.1 * rng.standard_normal(30)) for _ in range(2)]
    taus = [e - base for e in experts]
    add("wudi 3x10 rank-deficient", "wudi", shape, experts, base, base + wudi(taus, shape))
    add("wudi 3x10 lambda=0.8", "wudi", shape, experts, base, base + wudi(taus, shape, lam=0.8), {"lambda": 0.8})

    # KnOTS on folded LoRA updates (rank 2 each): the shared basis has rank 6.
    shape = (8, 9)
    base = f32(rng.standard_normal(72))
    experts = [f32(base + low_rank(shape, 2, 0.1).reshape(-1)) for _ in range(3)]
    taus = [e - base for e in experts]
    add("knots 8x9 LoRA rank 2 x3", "knots", shape, experts, base, base + knots(taus, shape))
    add("knots 8x9 LoRA rank cap 4", "knots", shape, experts, base, base + knots(taus, shape, rank=4), {"rank": 4})

    # --balance norm: one expert 15x larger, rescaled to the mean norm before tsv.
    base, experts, taus = family((6, 7), 3, scales=[1.0, 15.0, 0.8])
    add("balance norm then tsv 6x7", "tsv", (6, 7), experts, base, base + tsv(balanced(taus), (6, 7)), balance="norm")
    add("balance norm then task_arithmetic 6x7", "task_arithmetic", (6, 7), experts, base,
        base + np.sum(balanced(taus), axis=0), balance="norm")

    doc = {"generator": "scripts/reference_methods.py", "numpy_version": np.__version__, "seed": SEED,
           "dtype": "float32 inputs, float64 reference", "cases": cases}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "MergeTests", "Fixtures", "subspace_methods.json")
    with open(out, "w") as f:
        f.write("{\n")
        items = [f' "{k}": {json.dumps(v)}' for k, v in doc.items() if k != "cases"]
        f.write(",\n".join(items) + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {len(cases)} cases to {os.path.relpath(out)}", file=sys.stderr)
    data_methods(os.path.dirname(out))


if __name__ == "__main__":
    main()
