"""Multi-hop reasoning over knowledge graphs (SPEC §2.3; thesis §6.1.2, Tables 6.3–6.5; Appendix A.1.2).

All variants score with ComplEx (Trouillon et al. 2016): entities ``e ∈ C^d`` and relations ``r ∈ C^d`` are
stored as real ``[·, 2d]`` vectors (real ‖ imaginary part); for a query vector ``u = s ∘ r`` (complex
product) the logits of all entities are ``θ = Re⟨s, r, ē⟩ = u_re·E_reᵀ + u_im·E_imᵀ = u·Eᵀ``. Reciprocal
relations (Lacroix et al. 2018) give every relation an inverse embedding (ids R..2R−1).

* ``complex``   — ComplEx; the benchmark trains it on triples only (``data.train_max_length = 1``) and
  answers a path by composing relations: ``u = s ∘ r₁ ∘ … ∘ r_L``.
* ``complex-c`` — the same compositional model trained on all paths (no discretisation; "ComplEx-C").
* ``ours``      — every intermediate hop is a discrete-continuous component over **all entities**
  (Eq. 4.2): ``u = s ∘ r_i``, ``θ = u·Eᵀ``, ``z = estimator(θ)``, next ``s = zᵀE`` (the entity matrix is
  both the logit layer and the embedding, so no parameters are added), with DropRes between the
  component's input ``u`` and output ``zᵀE`` (``v = u + zᵀE`` w.p. 1−α, else ``zᵀE``). While α is small the
  model is ComplEx-C plus the traversed entity; at α = 1 (and at evaluation, MAP) it walks the graph one
  discrete entity per hop. The last hop scores all entities. Stochastic depth of hop i is i.

Dropouts as in Appendix A.1.2: on the subject (head entity) embedding, on every relation embedding and on
the object (candidate entity) matrix of the final scoring. Optional L2 on the entity/relation embeddings
of the batch. Loss: cross-entropy of the target among all entities (1-N scoring).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.ranking import FilteredRankingMetric, GuuRankingMetric
from ..nn import DiscreteContinuous
from .._lightning import attached_trainer
from .base import SCGModule
from .evaluation import TEST, VAL, eval_noise, log_reduced

VARIANTS = ("ours", "complex", "complex-c")


def cmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex product of ``[…, 2d]`` real-packed vectors (real ‖ imaginary)."""
    ar, ai = a.chunk(2, -1)
    br, bi = b.chunk(2, -1)
    return torch.cat([ar * br - ai * bi, ar * bi + ai * br], -1)


class KGPathModule(SCGModule):
    """Path-query answering with ComplEx scoring; see the module docstring for the variants.

    ``num_entities``/``num_relations`` (base relations) are read from the data module at setup when not
    given, so ``--data.dataset`` alone switches the graph; they are stored in the hyperparameters so a
    checkpoint can be reloaded on its own.
    """

    def __init__(self, variant: str = "ours", estimator: str = "gumbel", tau: float = 4.0, beta: float = 1.0,
                 estimator_kwargs: dict | None = None, dim: int = 256, lr: float = 1e-3, dropres: bool = True,
                 dropres_mode: str = "batch", subject_dropout: float = 0.0, relation_dropout: float = 0.0,
                 object_dropout: float = 0.0, entity_reg: float = 0.0, relation_reg: float = 0.0,
                 init_scale: float = 0.1, num_entities: int | None = None, num_relations: int | None = None,
                 max_length: int = 16) -> None:
        super().__init__(estimator=estimator, tau=tau, beta=beta, estimator_kwargs=estimator_kwargs, lr=lr)
        if variant not in VARIANTS:
            raise ValueError(f"unknown KG variant {variant!r}; choose one of {VARIANTS}")
        for n, p in (("subject_dropout", subject_dropout), ("relation_dropout", relation_dropout),
                     ("object_dropout", object_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{n} must be in [0, 1), got {p}")
        if dim < 1 or init_scale <= 0:
            raise ValueError(f"need dim >= 1 and init_scale > 0, got dim={dim}, init_scale={init_scale}")
        self.save_hyperparameters()
        self.variant, self.dim = variant, dim
        self.discrete = variant == "ours"
        self.built = False
        # the estimator exists from construction (the hop itself needs the entity count, known at setup),
        # so that tools inspecting a fresh module see which estimator is in play
        self.hop_estimator = self.make_estimator() if self.discrete else None
        self.val_metric: nn.Module | None = None
        self.test_metric: nn.Module | None = None
        if num_entities is not None and num_relations is not None:
            self.build(num_entities, num_relations)

    # -- construction ----------------------------------------------------------------------------------
    def build(self, num_entities: int, num_relations: int, protocol: str = "filtered") -> None:
        if self.built:
            if (num_entities, num_relations) != (self.num_entities, self.num_relations):
                raise ValueError(f"the model was built for {self.num_entities} entities / {self.num_relations} "
                                 f"relations but the data has {num_entities} / {num_relations}")
            return
        hp = self.hparams
        self.num_entities, self.num_relations = int(num_entities), int(num_relations)
        self.hparams.update(num_entities=self.num_entities, num_relations=self.num_relations)
        # entity matrix E [N, 2d] = the weight of a bias-free linear layer, so θ = u·Eᵀ is that layer and
        # TiedEmbedding gives h(z) = zᵀE (SPEC §1.1: categories tied to the logit layer)
        self.entity = nn.Linear(2 * self.dim, self.num_entities, bias=False)
        self.relation = nn.Embedding(2 * self.num_relations, 2 * self.dim)
        nn.init.normal_(self.entity.weight, std=hp.init_scale)
        # relations start near the identity of the complex product (1 + 0i plus noise), so that composing
        # up to 10 of them neither explodes nor vanishes at initialisation
        with torch.no_grad():
            self.relation.weight.normal_(std=hp.init_scale)
            self.relation.weight[:, :self.dim] += 1.0
        if self.discrete:
            self.hop = DiscreteContinuous(self.hop_estimator, self.entity, depth=1, dropres=hp.dropres,
                                          dropres_mode=hp.dropres_mode)
        self.protocol = protocol
        metric = FilteredRankingMetric if protocol == "filtered" else GuuRankingMetric
        # validation is always filtered MRR on all validation paths (thesis §6.1.2), also for Guu sets
        self.val_metric = FilteredRankingMetric(max_length=hp.max_length)
        self.test_metric = metric(max_length=hp.max_length)
        self.built = True

    def setup(self, stage: str) -> None:
        dm = getattr(attached_trainer(self), "datamodule", None)
        if dm is not None and hasattr(dm, "num_entities"):
            self.build(dm.num_entities, dm.num_relations, dm.eval_protocol)
        elif not self.built:
            raise RuntimeError("KGPathModule needs num_entities/num_relations: pass them or use KGPathDataModule")

    # -- model ---------------------------------------------------------------------------------------------
    def forward(self, head: torch.Tensor, rels: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Logits over all entities ``[B, N]`` for the path queries ``(head, r_1..r_length, ?)``."""
        hp = self.hparams
        s = F.dropout(self.entity.weight[head], hp.subject_dropout, self.training)
        last = length - 1
        query = torch.zeros_like(s)
        L = int(length.max())
        for i in range(L):
            r = F.dropout(self.relation(rels[:, i]), hp.relation_dropout, self.training)
            u = cmul(s, r)
            query = torch.where((last == i).unsqueeze(1), u, query)
            if i == L - 1:
                break
            active = last > i
            if self.discrete:
                # rows whose path ends here get an all-False mask: z = 0 and no log-probability
                # (score-function estimators), their output is discarded below
                mask = None if bool(active.all()) else active.unsqueeze(1).expand(-1, self.num_entities)
                v = self.hop(u, mask=mask, depth=i + 1)
                s = torch.where(active.unsqueeze(1), v, u)
            else:
                s = u
        obj = F.dropout(self.entity.weight, hp.object_dropout, self.training)
        return query @ obj.t()

    def _regulariser(self, head, rels, length, tail) -> torch.Tensor:
        hp = self.hparams
        reg = self.entity.weight.new_zeros(())
        if hp.entity_reg > 0:
            reg = reg + hp.entity_reg * (self.entity.weight[head].pow(2).sum(1).mean()
                                         + self.entity.weight[tail].pow(2).sum(1).mean())
        if hp.relation_reg > 0:
            used = torch.arange(rels.shape[1], device=rels.device) < length.unsqueeze(1)
            reg = reg + hp.relation_reg * (self.relation(rels).pow(2).sum(-1) * used).sum() / used.sum()
        return reg

    # -- steps -----------------------------------------------------------------------------------------------
    def training_loss(self, batch):
        head, rels, length, tail = self.expand(batch["head"], batch["rels"], batch["length"], batch["tail"])
        logits = self(head, rels, length)
        cost = F.cross_entropy(logits, tail, reduction="none")
        loss = cost.mean() + self.surrogate(cost) + self._regulariser(head, rels, length, tail)
        return loss, {"top1": (logits.argmax(1) == tail).float().mean()}

    def _update(self, metric, batch, dataloader_idx: int = 0) -> None:
        with eval_noise(self, batch["index"], TEST, dataloader_idx):  # keyed, for a sampling eval_mode
            scores = self(batch["head"], batch["rels"], batch["length"])
        if self.protocol == "filtered":
            metric.update(scores, batch["tail"], batch["filter_mask"], batch["length"])
        else:
            metric.update(scores, batch["tail"], batch["positive_mask"], batch["candidate_mask"], batch["length"])

    def validation_step(self, batch, batch_idx):
        with eval_noise(self, batch["index"], VAL):  # keyed, for a sampling eval_mode
            scores = self(batch["head"], batch["rels"], batch["length"])
        filt = batch["filter_mask"] if "filter_mask" in batch else batch["positive_mask"]
        self.val_metric.update(scores, batch["tail"], filt, batch["length"])

    def on_validation_epoch_end(self) -> None:
        out = self.val_metric.compute()
        log_reduced(self, {"val/mrr": out["mrr"].float()}, prog_bar=True)
        log_reduced(self, {"val/hits@10": out["hits@10"].float()})
        self.val_metric.reset()

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._update(self.test_metric, batch, dataloader_idx)

    def train_lengths(self) -> list[int]:
        dm = getattr(self.trainer, "datamodule", None)
        ts = getattr(dm, "train_set", None)
        return sorted(ts.length_counts()) if ts is not None else []

    def on_test_epoch_end(self) -> None:
        out = self.test_metric.compute()
        self.test_metric.reset()
        log_reduced(self, {f"test/{k}": v.float() for k, v in out.items()})
        key = "mrr" if self.protocol == "filtered" else "mq"
        per_len = {int(k.rsplit("_len", 1)[1]): float(v) for k, v in out.items() if k.startswith(f"{key}_len")}
        train = self.train_lengths()
        if per_len and train:
            longest_train, longest_test = max(train), max(per_len)
            beyond = [v for L, v in per_len.items() if L > longest_train]
            if beyond:
                # the thesis' extrapolation claim: mean beyond the training range, and the drop from the
                # longest training length to the longest test length (smaller = better extrapolation)
                log_reduced(self, {f"test/{key}_extrap": sum(beyond) / len(beyond)})
            if longest_train in per_len:
                log_reduced(self, {f"test/{key}_drop": per_len[longest_train] - per_len[longest_test]})


# -- memory measurement ---------------------------------------------------------------------------------------
def _memory(argv: list[str] | None = None) -> None:
    """Peak memory of one training step (forward + backward, full-entity softmax at every hop) and of one
    evaluation batch on a synthetic FB15k-237-sized problem (SPEC §2.3: must fit at batch 512)."""
    p = argparse.ArgumentParser(description=_memory.__doc__)
    p.add_argument("--entities", type=int, default=14541)
    p.add_argument("--relations", type=int, default=237)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--length", type=int, default=5, help="path length of every query (training max: 5)")
    p.add_argument("--eval-length", type=int, default=10)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--variant", default="ours")
    p.add_argument("--estimator", default="gumbel")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = {"num_samples": 2} if a.estimator == "reinforce" else {}
    m = KGPathModule(a.variant, a.estimator, dim=a.dim, num_entities=a.entities, num_relations=a.relations,
                     estimator_kwargs=kw, subject_dropout=0.1, relation_dropout=0.2, object_dropout=0.6)
    g = torch.Generator().manual_seed(0)
    B = a.batch_size
    batch = {"head": torch.randint(a.entities, (B,), generator=g),
             "rels": torch.randint(2 * a.relations, (B, a.length), generator=g),
             "length": torch.full((B,), a.length), "tail": torch.randint(a.entities, (B,), generator=g)}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m.train()
    t0 = time.perf_counter()
    loss, _ = m.training_loss(batch)
    loss.backward()
    t_train = time.perf_counter() - t0
    peak_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        rels = torch.randint(2 * a.relations, (B, a.eval_length), generator=g)
        m(batch["head"], rels, torch.full((B,), a.eval_length))
        t_eval = time.perf_counter() - t0
    peak_eval = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in m.parameters()) * 4 / 2 ** 20
    print(f"{a.variant}/{a.estimator}: {a.entities} entities, {a.relations} relations, dim {a.dim}, batch {B}")
    print(f"  process RSS before the step {base:.0f} MiB (parameters {params:.0f} MiB)")
    print(f"  peak RSS after train step (length {a.length}, fwd+bwd): {peak_train:.0f} MiB "
          f"(+{peak_train - base:.0f} MiB), {t_train:.2f} s")
    print(f"  peak RSS after eval batch (length {a.eval_length}, MAP): {peak_eval:.0f} MiB, {t_eval:.2f} s")


if __name__ == "__main__":
    _memory()
