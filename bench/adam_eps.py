"""`adam_eps_margin`: how far Adam's ε sits below the gradient scale it divides, across width under μP.

    python bench/adam_eps.py            # widths 64-1024, 1 layer, 30 Adam steps (~3 min on 2 cores)
    python bench/adam_eps.py --quick

Adam's update is m / (sqrt(v) + ε). Under μP a hidden matrix's gradient entries shrink like 1/width,
so with a fixed ε the denominator is eventually ε, not sqrt(v), and the update shrinks (Everett et al.
2024, §3, "epsilon underflow"). hpsearch scales ε per group with the gradient (ε/m on hidden matrices
and the readout). This script trains the μP model for a few steps at each width on real tokens (vocab
512) and records, per parameter role, the median over entries of sqrt(v) (Adam's own running RMS),
and the ratio sqrt(v) / ε for the fixed ε 1e-8 and for the scaled ε: where that ratio nears 1, ε
changes the update.
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (environment first)
import numpy as np
from common import record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", default="64,128,256,512,1024")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.widths, args.steps = "64,128", 5

    import torch

    from trainables.corpus import load_tokens
    from trainables.model import GPT, GPTConfig, param_groups, param_role

    tokens = load_tokens(None, log=None).tokens
    B, T, V = 8, 32, 512
    data = torch.from_numpy(tokens[: (args.steps + 1) * B * (T + 1)].astype(np.int64) % V).view(-1, B, T + 1)
    widths = [int(w) for w in args.widths.split(",")]
    rows = []
    for w in widths:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=V, context_len=T, emb_dim=w, n_layers=1, n_heads=4, dropout=0.0,
                              parametrization="mup", base_width=widths[0]))
        groups = param_groups(model, 0.0)
        opt = torch.optim.AdamW(groups, lr=1e-3)
        for g in opt.param_groups:
            g["lr"] = 1e-3 * g["lr_scale"]
        for s in range(args.steps):
            loss = model(data[s, :, :-1], data[s, :, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
        eps_of = {id(p): g["eps"] for g in opt.param_groups for p in g["params"]}
        by_role: dict[str, list[tuple[float, float]]] = {}
        for name, p in model.named_parameters():
            v = opt.state[p]["exp_avg_sq"]
            bias_fix = 1 - 0.999 ** args.steps
            rms = float((v / bias_fix).sqrt().median())
            by_role.setdefault(param_role(name, p), []).append((rms, eps_of[id(p)]))
        for role, vals in by_role.items():
            rms = float(np.median([r for r, _ in vals]))
            eps = vals[0][1]
            rows.append({"width": w, "role": role, "sqrt_v": rms, "ratio_fixed_eps": rms / 1e-8,
                         "eps_scaled": eps, "ratio_scaled_eps": rms / eps})
            print(f"width {w:5d} {role:9s} sqrt(v) {rms:.3e}  /1e-8 = {rms / 1e-8:10.3g}  / scaled ε {eps:.2e} = {rms / eps:10.3g}")
    hidden = [r for r in rows if r["role"] == "hidden"]
    slope = float(np.polyfit(np.log2([r["width"] for r in hidden]), np.log2([r["sqrt_v"] for r in hidden]), 1)[0])
    smallest = min(r["ratio_fixed_eps"] for r in hidden)
    # the width at which the hidden sqrt(v) would reach 10 x ε = 1e-7, extrapolating the measured slope
    w_last, v_last = hidden[-1]["width"], hidden[-1]["sqrt_v"]
    reach = w_last * (1e-7 / v_last) ** (1 / slope) if slope < 0 else None
    figures = {"adam_eps_margin": {"hidden_sqrt_v_slope_vs_width": round(slope, 3),
                                   "smallest_ratio_fixed_eps": round(smallest, 1),
                                   "width_where_fixed_eps_reaches_10pct": None if reach is None else round(reach)}}
    record(figures, {"rows": rows, "steps": args.steps, "widths": args.widths}, quick=args.quick)


if __name__ == "__main__":
    main()
