"""How much of a score-function learning signal's variance a baseline removes, at a trained discrete-VAE checkpoint:
``python -m scgbench.bench.score_baseline --checkpoint RUN/checkpoints/last.ckpt``.

The encoder's learning signal is the reconstruction cost f(x, z) = −log p(x | z), z ~ q(z | x) (the KL is analytic).
A baseline b(x) that does not depend on z leaves the signal f − b, whose second moment splits as

    E[(f − b)²] = E_x Var[f | x] + E_x (E[f | x] − b(x))²
                  (within-image: no baseline removes it)   (what the baseline misses)

with the between-image variance Var_x E[f | x] the miss of the best constant baseline. For B training images (one
Bernoulli draw of their pixels each) and M samples of z per image it prints the within- and between-image variances
and the miss of

* the checkpoint's own NVIL baseline c + C_ψ(θ̄) (:mod:`scgbench.estimators.nvil`), when the run used NVIL;
* the least-squares baseline linear in the node probabilities in node order (fitted on half the images, scored on
  the other half);
* NVIL's ``baseline_input="params"`` network trained alone for ``--fit-steps`` steps of the run's batch size on the
  frozen model (Adam at NVIL's ``baseline_lr``), scored on the held-out half.

Each miss is estimated without the sampling error of the M-sample mean (its expected share Var[f | x] / M is
subtracted). Mnih & Gregor (2014) §3.3 motivate the input-dependent baseline by exactly this between-image term.
Nothing in the package imports this module.
"""

from __future__ import annotations

import argparse
import json

import torch


def variance_split(f: torch.Tensor) -> tuple[float, float]:
    """(within, between) of costs f [B, M] (M samples per image): mean over images of the unbiased per-image
    variance, and the variance over images of the per-image mean less its sampling share (within / M)."""
    within = float(f.var(1, unbiased=True).mean())
    between = float(f.mean(1).var(unbiased=True)) - within / f.shape[1]
    return within, between


def miss(f: torch.Tensor, b: torch.Tensor) -> float:
    """E_x (E[f | x] − b(x))² from costs f [B, M] and a baseline b [B], less the M-sample mean's share."""
    within = f.var(1, unbiased=True)
    return float(((f.mean(1) - b) ** 2 - within / f.shape[1]).mean())


def linear_baseline(features: torch.Tensor, target: torch.Tensor, fit: slice, score: slice) -> torch.Tensor:
    """Least squares of target [B] on features [B, D] (with an intercept) over rows ``fit``, predicted on ``score``."""
    design = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], 1).double()
    w = torch.linalg.lstsq(design[fit], target[fit, None].double()).solution
    return (design[score] @ w).squeeze(1).to(target.dtype)


def main(argv: list[str] | None = None) -> dict:
    from ..datamodules.discrete_vae import DiscreteVAEDataModule
    from ..estimators import NVIL
    from ..estimators.nvil import ordered_probabilities
    from ..models.discrete_vae import DiscreteVAE

    ap = argparse.ArgumentParser(prog="python -m scgbench.bench.score_baseline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a discrete-vae run's checkpoint (e.g. checkpoints/last.ckpt)")
    ap.add_argument("--images", type=int, default=2000, help="training images (half fit, half held out)")
    ap.add_argument("--samples", type=int, default=32, help="samples of z per image")
    ap.add_argument("--fit-steps", type=int, default=10_000, help="steps of the params baseline on the frozen model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", help="also write the numbers as JSON here")
    args = ap.parse_args(argv)
    if args.images < 4 or args.samples < 2:
        ap.error("--images must be >= 4 and --samples >= 2 (the split needs images; the variance, samples)")
    torch.set_num_threads(1)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = DiscreteVAE.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    saved = ckpt.get("datamodule_hyper_parameters") or {}
    dm_args = {k: v for k, v in saved.items() if not k.startswith("_")}  # LightningCLI's own entries
    dm_args["download"] = False
    dm = DiscreteVAEDataModule(**dm_args)
    dm.setup("fit")
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    grey = dm.train_set.images
    binary = dm.binarization in ("dynamic", "redraw")

    def draw(ids: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.bernoulli(grey[ids], generator=g) if binary else grey[ids]
        with torch.no_grad():
            params = model.encode(x)
            z = torch.distributions.OneHotCategorical(logits=params).sample((m,))
            return params, torch.stack([model.nll(x, z[i]) for i in range(m)], 1)

    perm = torch.randperm(len(grey), generator=g)
    held, rest = perm[:args.images], perm[args.images:]
    params, f = draw(held, args.samples)
    within, between = variance_split(f)
    half = args.images // 2
    fit, score = slice(0, half), slice(half, None)
    out = {"checkpoint": args.checkpoint, "estimator": model.estimator.name, "images": args.images,
           "samples": args.samples, "mean_cost": float(f.mean()), "within_image_var": within,
           "between_image_var": between}
    if isinstance(model.estimator, NVIL):
        with torch.no_grad():
            own = model.estimator.c + model.estimator.baseline(params)
        out["checkpoint_baseline"] = model.estimator.baseline_input
        out["checkpoint_baseline_miss"] = miss(f[score], own[score])
    probs = ordered_probabilities(params)
    out["linear_baseline_miss"] = miss(f[score], linear_baseline(probs, f.mean(1), fit, score))
    if args.fit_steps:
        est = NVIL(baseline_input="params")
        est.check_node_group(model.num_nodes, model.num_categories)
        opt = torch.optim.Adam(est.parameter_groups())
        batch = dm.batch_size
        c = None
        for step in range(args.fit_steps):
            p, fb = draw(rest[torch.randint(len(rest), (batch,), generator=g)], 1)
            b = est.baseline(p)
            c = (fb[:, 0] - b.detach()).mean() if c is None else c
            loss = 0.5 * (fb[:, 0] - c - b).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            c = est.decay * c + (1 - est.decay) * (fb[:, 0] - b.detach()).mean()  # NVIL's running mean
        with torch.no_grad():
            out["params_baseline_fit_steps"] = args.fit_steps
            out["params_baseline_miss"] = miss(f[score], c + est.baseline(params[score]))
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v:.1f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.output:
        with open(args.output, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
