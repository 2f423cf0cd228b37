"""Exact-gradient diagnostics of the estimators on the discrete VAE (SPEC §2.6; the analyses of ReinMax and CatLog).

For a fixed batch x of B test images and a fixed model (a fresh one, or a trained checkpoint), the objective is the
reconstruction term of the negative ELBO as a function of the encoder's logits θ [B, N, K]:

    F(θ) = (1/B) Σ_b E_{z ~ q_θb}[ −log p(x_b | z) ],   q_θb = Π_n Cat(softmax θ_bn),

the part of the training loss whose gradient the estimator supplies (the analytic KL's gradient is exact for every
estimator). Its exact gradient g = ∂F/∂θ is computed by enumerating all K^N configurations (:func:`exact_gradient`,
chunked, backward per chunk, so memory stays bounded). Each estimator setting (relaxations at each τ, Direct at each
ε) draws D gradients ĝ_d = ∂F̂/∂θ of its own estimate F̂ of F — the relaxations decode their relaxed sample, exactly
as in training — and is summarised by

    relative bias  ‖ḡ − g‖ / ‖g‖,                         ḡ = (1/D) Σ_d ĝ_d
    relative std   sqrt((1/D) Σ_d ‖ĝ_d − ḡ‖²) / ‖g‖
    cosine         (1/D) Σ_d ⟨ĝ_d, g⟩ / (‖ĝ_d‖ ‖g‖)
    bias floor     relative std / √D   (the Monte-Carlo error of the bias itself: a bias below it is not resolved)

and its cost: decoder evaluations per image and draw, and milliseconds per draw of the whole batch. Every estimator
is drawn through the one entry point tasks use, ``Estimator.estimate`` with the model's objective
(:mod:`scgbench.estimators.contract`); the problem offers everything the discrete VAE offers except networks sized
by ``param_size``, so IGR (Gaussian (μ, log σ), not the logits whose exact gradient is enumerated) is refused by
the same compatibility check as everywhere else.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .estimators import (COST_ORACLE, LOG_WEIGHTS, RELAXED_COST, Estimator, Objective, compatibility, get_estimator,
                         get_estimator_class, list_estimators)
from .estimators.exact import configurations

#: the reference enumeration's cap on K^N (an 8 × 4 latent has 65,536 configurations)
MAX_CONFIGURATIONS = 65_536
#: decoder inputs (images × configurations) per call of the reference enumeration
CHUNK = 65_536
#: below this root-mean-square entry the exact gradient is float noise (a saturated, deterministic posterior)
TINY_GRADIENT = 1e-9
DEFAULT_TAUS = (0.5, 1.0, 2.0)
DEFAULT_EPSILONS = (1.0, 0.1)
#: what a gradcheck problem offers an estimator: the discrete VAE's capabilities on fixed logits
PROVIDES = frozenset({COST_ORACLE, RELAXED_COST, LOG_WEIGHTS})


@dataclass
class Problem:
    """The fixed logits θ [B, N, K] of a batch and the model's costs as functions of the latents."""

    params: torch.Tensor
    #: rows (a slice of the batch) → the model's objective for those images (its ``DiscreteVAE.objective``)
    objective: Callable[[slice], Objective]

    def cost_fn(self, z: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) [B, M] of the whole batch at configurations z [B, M, N, K]."""
        return self.objective(slice(None)).cost(z)


def problem_of(model, x: torch.Tensor) -> Problem:
    """The :class:`Problem` of a :class:`scgbench.models.discrete_vae.DiscreteVAE` and a batch x [B, 784]."""
    model.eval()
    with torch.no_grad():
        params = model.encode(x)

    def objective(rows: slice) -> Objective:
        full = model.objective(x[rows])
        return Objective(full.sample_cost, full.cost, full.log_prior, full.kl, PROVIDES)

    return Problem(params, objective)


def check_size(num_nodes: int, num_categories: int, cap: int = MAX_CONFIGURATIONS) -> int:
    count = num_categories ** num_nodes
    if count > cap:
        raise ValueError(f"gradcheck enumerates K^N = {num_categories}^{num_nodes} = {count:,} configurations for the "
                         f"exact gradient, above the cap {cap:,}; use a smaller latent (e.g. --latent 4x3 or 8x4) "
                         f"or raise --max-configurations")
    return count


def exact_gradient(problem: Problem, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """``(F(θ), ∂F/∂θ)`` by enumeration — written apart from the ``exact`` estimator on purpose: it is the reference
    that estimator is checked against (its row must come out at zero bias). F = (1/B) Σ_b Σ_c q_b(c) f_b(c), summed
    chunk by chunk with one backward pass per chunk (the gradient of a sum is the sum of the chunks' gradients).

    Each image's cost is taken relative to a constant b_b (its mean cost over the first chunk): Σ_c q_b(c) = 1, so
    ``F = (1/B) Σ_b [b_b + Σ_c q_b(c)(f_b(c) − b_b)]`` has the same gradient, and float32 no longer sums
    ~540-nat terms over tens of thousands of configurations to get a gradient of norm ~0.05 (the plain sum lost
    0.6 % of it on an 8 × 4 latent)."""
    params = problem.params.detach()
    b, n, k = params.shape
    theta = params.clone().requires_grad_(True)
    codes = configurations(n, k, params.device)
    per_call = max(1, chunk // b)
    total = torch.zeros((), dtype=torch.float64)
    base = None
    for start in range(0, len(codes), per_call):
        c = codes[start:start + per_call]                                              # [C, N]
        logq = torch.log_softmax(theta, dim=-1)                                        # [B, N, K]
        log_qc = logq[:, torch.arange(n, device=c.device)[None, :], c].sum(-1)        # [B, C]
        z = torch.nn.functional.one_hot(c, k).to(params.dtype)[None].expand(b, -1, -1, -1)
        cost = problem.cost_fn(z)
        if base is None:
            base = cost.detach().mean(1, keepdim=True)
            total += base.double().sum() / b
        part = (log_qc.exp() * (cost - base)).sum() / b
        part.backward()
        total += part.detach().double()
    return total, theta.grad.detach()


def check_exact_gradient(exact: torch.Tensor) -> None:
    """Refuse a vanishing exact gradient: relative bias and std are undefined when ‖g‖ is float noise."""
    if not float(exact.norm()) > TINY_GRADIENT * math.sqrt(exact.numel()):
        raise ValueError(f"the exact gradient vanishes (norm {float(exact.norm()):.2g}): this model's posterior is "
                         "deterministic to float precision (every softmax saturated), so relative bias and std are "
                         "undefined; check an earlier checkpoint of the run or a fresh model (--latent)")


def draw_gradient(est: Estimator, problem: Problem, slice_inputs: int = CHUNK) -> torch.Tensor:
    """One draw of the estimator's gradient ĝ = ∂F̂/∂θ (module docstring), through ``Estimator.estimate``. An
    estimator with many decoder evaluations runs on slices of the batch, one backward pass each, so that its decoder
    inputs per pass stay under ``slice_inputs``; each slice's loss is weighted by its share of the batch."""
    theta = problem.params.detach().clone().requires_grad_(True)
    b, n, k = theta.shape
    step = max(1, slice_inputs // max(1, est.evaluations(n, k)))
    if step >= b:
        est.estimate(theta, problem.objective(slice(None))).loss.backward()
        return theta.grad.detach()
    for s in range(0, b, step):
        rows = slice(s, s + step)
        e = est.estimate(theta[rows], problem.objective(rows))
        (e.cost.sum() / (b * (len(e.cost) // len(theta[rows]))) + e.surrogate * (len(theta[rows]) / b)).backward()
    return theta.grad.detach()


def summarise(grads: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Relative bias and std, mean cosine and the bias floor of D draws ``grads`` [D, ...] against ``exact``."""
    d = grads.shape[0]
    flat, g = grads.reshape(d, -1).double(), exact.reshape(-1).double()
    norm = g.norm().clamp_min(1e-300)
    mean = flat.mean(0)
    rel_std = float((flat - mean).pow(2).sum(1).mean().sqrt() / norm)
    cosine = float((flat @ g / (flat.norm(dim=1).clamp_min(1e-300) * norm)).mean())
    return {"rel_bias": float((mean - g).norm() / norm), "rel_std": rel_std, "cosine": cosine,
            "bias_floor": rel_std / math.sqrt(d)}


def settings(names: list[str], taus=DEFAULT_TAUS, epsilons=DEFAULT_EPSILONS) -> list[tuple[str, dict]]:
    """(estimator, options) pairs: each temperature for estimators that use one, each ε for Direct."""
    out: list[tuple[str, dict]] = []
    for name in names:
        cls = get_estimator_class(name)
        why = compatibility(cls, provides=PROVIDES, task="gradcheck")
        if why:
            raise ValueError(f"{why} (gradcheck differentiates the categorical logits whose exact gradient it "
                             f"enumerates); leave it out")
        if name == "direct":
            # one ε per setting, as its record says: Direct's training schedule (ε decayed every 1,000 calls) off
            out += [(name, {"epsilon": float(e), "epsilon_floor": min(float(e), 0.1), "epsilon_rate": 0.0})
                    for e in epsilons]
        elif cls.uses_temperature:
            out += [(name, {"tau": float(t)}) for t in taus]
        else:
            out.append((name, {}))
    return out


def matched_settings(plan: list[tuple[str, dict]], evaluations: int, num_nodes: int,
                      num_categories: int) -> list[tuple[str, dict, bool]]:
    """``--match-evaluations N``: each setting with the options its class gives for N decoder evaluations per image
    and draw (:meth:`~scgbench.estimators.base.Estimator.options_for_evaluations`: the sample count that spends N,
    or the largest below N) and whether it was matched. A class without such an option (a pathwise estimator's 1,
    Direct's N·K + 1, exact's K^N) or whose smallest setting costs more than N keeps its own cost."""
    out = []
    for name, opts in plan:
        extra = get_estimator_class(name).options_for_evaluations(int(evaluations), num_nodes, num_categories)
        out.append((name, {**opts, **extra} if extra else dict(opts), extra is not None))
    return out


def default_estimators(num_categories: int) -> list[str]:
    return list_estimators(num_categories=num_categories, provides=PROVIDES)


def check_estimator(name: str, options: dict, num_nodes: int, num_categories: int) -> Estimator:
    est = get_estimator(name, **options)
    why = compatibility(est, provides=PROVIDES, num_nodes=num_nodes, num_categories=num_categories, task="gradcheck")
    if why:
        raise ValueError(why)
    return est.train()


def run_setting(est: Estimator, problem: Problem, exact: torch.Tensor, draws: int) -> dict[str, float]:
    """D draws of one estimator setting, summarised (:func:`summarise`) with its cost per draw."""
    if draws > 1:  # warm-up (allocator, lazy initialisation) out of the timing; not for a one-draw (exact) setting
        draw_gradient(est, problem)
    t0 = time.perf_counter()
    grads = torch.stack([draw_gradient(est, problem) for _ in range(draws)])
    ms = 1e3 * (time.perf_counter() - t0) / draws
    return {**summarise(grads, exact), "evals_per_draw": float(est.evaluations_per_step), "ms_per_draw": ms}


# -- the command ---------------------------------------------------------------------------------------------------
def load_model(benchmark, latent: str | None, checkpoint: str | None, seed: int):
    """A fresh model (seeded initialisation, ``latent``) or a trained one from a Lightning checkpoint, and its state
    label and the data options to take the batch with."""
    if checkpoint is None:
        if latent is None:
            raise ValueError("gradcheck needs --latent NxK (a fresh model) or --checkpoint PATH (a trained one)")
        torch.manual_seed(seed)
        return benchmark.module(estimator="gumbel", latent=latent), "fresh", {}
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        hp = dict(ckpt["hyper_parameters"])
    except Exception as e:  # a foreign or truncated file
        raise ValueError(f"--checkpoint {path}: not a Lightning checkpoint of {benchmark.name} ({e})") from None
    if latent is not None and hp.get("latent") != latent:
        raise ValueError(f"--latent {latent} differs from the checkpoint's latent {hp.get('latent')}; drop --latent")
    hp.update(estimator="gumbel", estimator_kwargs={})  # only the networks matter; θ's gradient is the estimators'
    model = benchmark.module(**{k: v for k, v in hp.items() if not k.startswith("_")})
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("estimator.")}, strict=False)
    return model, f"trained {ckpt.get('global_step', '?')} steps", dict(ckpt.get("datamodule_hyper_parameters", {}))


def fixed_batch(benchmark, data_options: dict, size: int) -> torch.Tensor:
    """The first ``size`` test images (binarised once, with the data seed: the same batch in every call)."""
    options = {k: v for k, v in data_options.items() if k in ("dataset", "source", "binarization", "val_size",
                                                                 "data_seed", "root")}
    options.setdefault("source", "auto")
    dm = benchmark.datamodule(**options, download=False)
    dm.setup("test")
    if size > len(dm.test_set):
        raise ValueError(f"--batch {size} exceeds the {len(dm.test_set)} test images")
    return dm.test_set.images[:size].clone()


def run_gradcheck(benchmark_name: str, latent: str | None = None, checkpoint: str | None = None,
                  estimators: list[str] | None = None, taus=DEFAULT_TAUS, epsilons=DEFAULT_EPSILONS,
                  draws: int = 1000, batch: int = 16, seed: int = 0, max_configurations: int = MAX_CONFIGURATIONS,
                  results_dir=None, figure_path=None, threads: int | None = None,
                  match_evaluations: int | None = None, echo=print) -> list[Path]:
    """``scgbench gradcheck``: every check of the options first (exit 2 before any work), then the exact gradient,
    then each estimator setting; one record per setting and the bias-versus-std figure. ``match_evaluations``
    (``--match-evaluations N``) sets each estimator's sample count to spend N decoder evaluations per image and
    draw where it has one (:func:`matched_settings`); the record says the setting and whether it was matched."""
    from .benchmarks import get_benchmark
    from .io import runs_root
    from .leaderboard.gradcheck import KIND, figure, setting_label
    from .store import results_dir as _results_dir, write_record
    from .models.discrete_vae import parse_latent
    from .provenance import git_commit, hardware, load_average, package_versions
    from .runner import choose_threads, probe_writable

    bm = get_benchmark(benchmark_name)
    if not PROVIDES <= getattr(bm.module, "provides", frozenset()) or not hasattr(bm.module, "objective"):
        raise ValueError(f"gradcheck needs a benchmark whose loss can be evaluated at every latent configuration "
                         f"(discrete-vae); {bm.name} cannot")
    if draws < 2:
        raise ValueError(f"--draws must be >= 2 (a standard deviation needs two draws), got {draws}")
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    if any(not t > 0 for t in taus) or any(not 0 < e <= 1 for e in epsilons):
        raise ValueError(f"--taus must be > 0 and --epsilons in (0, 1], got {list(taus)} and {list(epsilons)}")
    if match_evaluations is not None and not (isinstance(match_evaluations, int) and match_evaluations >= 1):
        raise ValueError(f"--match-evaluations must be an integer >= 1 (decoder evaluations per image and draw), got "
                         f"{match_evaluations}")
    if latent is not None:
        try:
            parse_latent(latent)
        except ValueError as e:  # the model names its own option; here the user typed --latent
            raise ValueError("--latent: " + re.sub(r"\s*\(--model\.latent\)\s*$", "", str(e))) from None
    if checkpoint is None and latent is not None:
        check_size(*parse_latent(latent), cap=max_configurations)
    thread_info = choose_threads(threads)
    # a trained model's saturated softmax makes q(c) of most configurations subnormal floats, which the CPU computes
    # with ~6x slower microcode (8x4: 910 s against 150 s for the exact gradient); values below 1e-38 do not count
    torch.set_flush_denormal(True)
    model, state, data_options = load_model(bm, latent, checkpoint, seed)
    n, k = model.num_nodes, model.num_categories
    latent = f"{n}x{k}"
    check_size(n, k, cap=max_configurations)
    names = estimators or default_estimators(k)
    plan = [(name, opts, False) for name, opts in settings(names, taus, epsilons)]
    if match_evaluations is not None:
        plan = matched_settings([(name, opts) for name, opts, _ in plan], match_evaluations, n, k)
    ests = [(name, opts, matched, check_estimator(name, {**opts, **({"max_configurations": max_configurations}
                                                                    if name == "exact" else {})}, n, k))
            for name, opts, matched in plan]
    out_dir = _results_dir(results_dir)
    probe_writable(out_dir, "results directory", "--results-dir or $SCGBENCH_RESULTS_DIR")
    figure_path = Path(figure_path or runs_root() / bm.name / "gradcheck"
                       / f"bias_std-{latent}-{state.replace(' ', '-')}.png")
    probe_writable(figure_path.parent, "figure directory", "--figure")

    x = fixed_batch(bm, data_options, batch)
    problem = problem_of(model, x)
    t0 = time.perf_counter()
    objective, exact = exact_gradient(problem)
    check_exact_gradient(exact)
    echo(f"{bm.name} gradcheck, latent {latent} ({k ** n:,} configurations), {state} model, batch {batch}: "
         f"F = {float(objective):.3f} nats, exact gradient in {time.perf_counter() - t0:.1f} s")
    common = {"benchmark": bm.name, "kind": KIND, "variant": latent, "profile": KIND, "seed": int(seed),
              "state": state, "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()),
              "batch": batch, "objective": float(objective), "exact_grad_norm": float(exact.norm()),
              "code_version": git_commit(), "packages": package_versions(), "hardware": hardware(),
              "threads": thread_info, "data": {k: v for k, v in data_options.items() if k != "root"}}
    paths = []
    for name, opts, matched, est in ests:
        torch.manual_seed(seed)
        d = 1 if name == "exact" else draws  # zero variance: one draw is the whole distribution
        load0 = load_average()
        stats = run_setting(est, problem, exact, d)
        rec = {**common, "estimator": name, "setting": opts, "draws": d, "metrics": stats,
               "load_average": {"start": load0, "end": load_average()},
               "run_name": f"gradcheck-{latent}-{state}-{name}" + "".join(f"-{k}{v:g}" for k, v in opts.items()
                                                                         if k != "epsilon_floor")}
        if match_evaluations is not None:
            rec.update(match_evaluations=int(match_evaluations), evaluations_matched=matched)
        paths.append(write_record(rec, out_dir))
        note = "" if match_evaluations is None else "  (matched)" if matched else "  (unmatched: its own cost)"
        echo(f"  {name:13s} {setting_label(opts):8s} bias {stats['rel_bias']:.3f}  std {stats['rel_std']:.3f}  "
             f"cos {stats['cosine']:.3f}  floor {stats['bias_floor']:.3f}  {stats['evals_per_draw']:g} evals  "
             f"{stats['ms_per_draw']:.1f} ms{note}")
    from .store import read_records

    mine = [r for _, r in read_records(out_dir, kind=KIND) if r["benchmark"] == bm.name and r["variant"] == latent
            and r.get("state") == state]
    echo(f"records: {out_dir / bm.name}\nfigure: {figure(mine, figure_path)}")
    return paths

