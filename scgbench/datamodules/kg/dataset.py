"""OGB-style path-query datasets for multi-hop reasoning over knowledge graphs (SPEC §2.3, thesis §6.1.2).

``PathQueryDataset(name, root)`` downloads/locates the source graph, builds (or reads) the path queries,
caches them under ``<root>/<name>/processed/`` together with the parameters they were built with, and
exposes ``get_idx_split()`` (train/valid/test index tensors) and ``get_length_split(split)`` (per path
length).

Cache (``processed/data.pt`` + ``processed/meta.json``, format :data:`FORMAT_VERSION`): ``meta.json``
records the build parameters (format version, generator protocol, MD5 of every source file) and the sha256
and size of ``data.pt``. A cache whose parameters differ (stale, or written for another dataset), whose
``data.pt`` fails its sha256 (corrupt, truncated, or a build interrupted between the two writes) or whose
``meta.json`` is unreadable is named in a warning and rebuilt from the sources, which are always at hand.
``scgbench data NAME --force`` rebuilds it and downloads the sources again.

Datasets:
  * ``fb15k237-paths`` — the thesis protocol on FB15k-237 (Toutanova & Chen 2015): uniform random walks
    on the training graph give 272,115 training paths for each length 2–5; walks on the full graph,
    deduplicated against earlier splits, give 17,535 validation paths per length 2–5 and 20,466 test paths
    per length 2–10 (the split sizes of FB15k-237's triple files); every triple is added as a length-1
    path of its split. Evaluation: filtered MRR / Hits@k against all entities, both directions.
  * ``wordnet-paths`` / ``freebase-paths`` — the Guu et al. (2015) files ``train``/``dev``/``test``
    (``source<TAB>r1,r2,…<TAB>target``, ``**r`` = inverse of r); the base graph is the set of length-1
    paths of all three files. Evaluation: the Guu protocol (mean quantile, H@10).
  * ``umls-paths`` (default, offline), ``kinships-paths``, ``nations-paths`` — the same generator on the
    knowledge graphs shipped inside the PyKEEN wheel (read as data files; PyKEEN is never imported), with
    training lengths ≤ 3 and test lengths up to 6 so that extrapolation is visible.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import pickle
import tarfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scgbench.io import Progress, atomic_write_bytes, atomic_write_json, data_root, download, file_digest
from scgbench.datamodules.kg.graph import KnowledgeGraph
from scgbench.datamodules.kg.readers import PathFileError, encode_paths, read_path_names, read_triple_names
from scgbench.specs.kg import SPECS, PathProtocol

log = logging.getLogger(__name__)

#: bump when the cache layout or the generator changes, so that old caches are rebuilt
#: (2: meta.json records the sha256 and size of data.pt)
FORMAT_VERSION = 2
SPLITS = ("train", "valid", "test")

FB15K237_URL = ("https://download.microsoft.com/download/8/7/0/8700516A-AB3D-4850-B4BB-805C515AECE1/"
                "FB15K-237.2.zip")
#: Published statistics of FB15k-237 (Toutanova & Chen 2015) used to verify the download's content.
#: The archive's md5 is not published by Microsoft; pass ``checksum=`` to pin a digest you trust.
FB15K237_STATS = {"train": 272115, "valid": 17535, "test": 20466, "entities": 14541, "relations": 237}
GUU_URLS = {  # the CodaLab bundles of Guu et al. (2015), as fetched by the CoKE scripts
    "wordnet-paths": "https://worksheets.codalab.org/rest/bundles/0xf91669f6c6d74987808aeb79bf716bd0/contents/blob/",
    "freebase-paths": "https://worksheets.codalab.org/rest/bundles/0xdb6b691c2907435b974850e8eb9a5fc2/contents/blob/",
}
GUU_FILES = {"train": "train", "valid": "dev", "test": "test"}


# -- sources ---------------------------------------------------------------------------------------------
def pykeen_dataset_dir(name: str) -> Path:
    """Directory of a KG shipped in the PyKEEN wheel, found without importing pykeen (it is installed with
    --no-deps, so importing it would fail)."""
    spec = importlib.util.find_spec("pykeen")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline KG datasets read UMLS/Kinships/Nations from the PyKEEN wheel, which is not installed;"
            " run `pip install --no-deps pykeen` (only its data files are used)")
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "datasets" / name
        if all((d / f"{s}.txt").exists() for s in SPLITS):
            return d
    raise FileNotFoundError(f"pykeen is installed but has no datasets/{name}/{{train,valid,test}}.txt; "
                            f"reinstall it with `pip install --no-deps --force-reinstall pykeen`")


def fetch_fb15k237(raw_dir: Path, url: str = FB15K237_URL, checksum: str | None = None,
                   algorithm: str = "md5", force: bool = False) -> dict[str, Path]:
    """Download (checksum-verified when ``checksum`` is given) and extract FB15k-237's triple files
    (``force``: download and extract again even if they are present)."""
    files = {s: raw_dir / f"{s}.txt" for s in SPLITS}
    if not force and all(p.exists() for p in files.values()):
        return files
    archive = download(url, raw_dir / "FB15K-237.2.zip", checksum=checksum, algorithm=algorithm, force=force,
                       fix="run `scgbench data fb15k237-paths --force` to download it again")
    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise PathFileError(f"{archive}: not a readable zip archive ({e}); run `scgbench data fb15k237-paths "
                            "--force` to download it again") from e
    with z:
        names = z.namelist()
        for s, dest in files.items():
            member = next((n for n in (f"Release/{s}.txt", f"{s}.txt") if n in names), None)
            if member is None:
                raise PathFileError(f"{archive}: archive has no Release/{s}.txt (members: {names[:10]})")
            atomic_write_bytes(dest, z.read(member))
    return files


def fetch_guu(name: str, raw_dir: Path, url: str | None = None, force: bool = False) -> dict[str, Path]:
    """Locate ``train``/``dev``/``test`` of a Guu et al. path set under ``raw_dir`` (any sub-folder),
    downloading and unpacking the CodaLab tarball first when they are missing (or always, with ``force``)."""

    def find() -> dict[str, Path] | None:
        for d in [raw_dir, *sorted(p for p in raw_dir.rglob("*") if p.is_dir())]:
            if all((d / f).is_file() for f in GUU_FILES.values()):
                return {s: d / f for s, f in GUU_FILES.items()}
        return None

    found = find() if raw_dir.exists() and not force else None
    if found:
        return found
    url = url or GUU_URLS[name]
    try:
        archive = download(url, raw_dir / f"{name}.tar.gz", force=force)
    except ConnectionError as e:
        raise ConnectionError(f"{e}. Alternatively put the Guu et al. (2015) files train, dev, test of "
                              f"{name} into {raw_dir}") from e
    try:
        t = tarfile.open(archive)
    except tarfile.TarError as e:
        raise PathFileError(f"{archive}: not a readable tar archive ({e}); run `scgbench data {name} --force` "
                            "to download it again") from e
    with t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(raw_dir, filter="data")
        else:  # Python < 3.10.12: refuse members that would escape raw_dir
            for m in t.getmembers():
                if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
                    raise PathFileError(f"{archive}: unsafe archive member {m.name!r}")
            t.extractall(raw_dir)
    found = find()
    if not found:
        raise FileNotFoundError(f"{archive} did not contain the files train, dev, test")
    return found


# -- generation ------------------------------------------------------------------------------------------
def _vocab(triples_by_split: dict[str, list[tuple[str, str, str]]]) -> tuple[list[str], list[str]]:
    ents, rels = set(), set()
    for rows in triples_by_split.values():
        for h, r, t in rows:
            ents.update((h, t))
            rels.add(r)
    return sorted(ents), sorted(rels)


def sample_unique_paths(graph: KnowledgeGraph, length: int, count: int, exclude: set[bytes],
                        generator: torch.Generator, max_rounds: int = 200,
                        progress: Progress | None = None) -> Tensor:
    """``count`` distinct random-walk paths ``[count, length + 2]`` (head, r_1..r_L, tail) that are not
    in ``exclude`` (the keys of earlier splits); the keys of the new paths are added to ``exclude``."""
    got: list[np.ndarray] = []
    n = idle = 0
    for _ in range(max_rounds):
        need = count - n
        if need <= 0 or idle >= 3:  # three rounds without a new path: the graph is exhausted
            break
        h, r, t = graph.random_walks(max(2 * need, 256), length, generator)
        rows = torch.cat([h[:, None], r, t[:, None]], 1).numpy().astype(np.int64)
        before = n
        for row in rows:
            k = row.tobytes()
            if k not in exclude:
                exclude.add(k)
                got.append(row)
                n += 1
                if n == count:
                    break
        idle = idle + 1 if n == before else 0
        if progress is not None:
            progress.update(n - before, f"length {length}")
    if n < count:
        raise ValueError(f"could only sample {n} distinct new paths of length {length} (asked for {count}); "
                         f"the graph is too small for this count — lower it in the PathProtocol")
    return torch.from_numpy(np.stack(got))


def _key_set(rows: Tensor) -> set[bytes]:
    return {row.tobytes() for row in rows.numpy().astype(np.int64)}


def generate_path_splits(triples: dict[str, Tensor], num_entities: int, num_relations: int,
                         protocol: PathProtocol, progress: bool | Progress = True) -> dict[str, Tensor]:
    """The thesis' path protocol (§6.1.2) on id triples ``{"train","valid","test"}: [T, 3]``.

    Training walks use the training graph, validation and test walks the full graph; a path occurring in
    an earlier split (train → valid → test) or twice is dropped and resampled; every triple is a length-1
    path of its split. Returns ``heads``, ``rels`` [P, Lmax] (0-padded), ``lengths``, ``tails``, ``split``
    (0/1/2) as tensors. The walks are the data definition: one generator seeded with ``protocol.seed``
    (recorded in the cache parameters), unchanged since format 1. Long generations (FB15k-237: about a
    million walks) print :class:`~scgbench.io.Progress` lines on stderr.
    """
    g = torch.Generator().manual_seed(protocol.seed)
    total = sum(protocol.count(s, len(triples[s])) for s in SPLITS for L in protocol.lengths(s) if L >= 2)
    prog = Progress.of(progress, "KG path generation", total, "paths")
    train_graph = KnowledgeGraph(triples["train"], num_entities, num_relations, protocol.inverse_edges)
    full_graph = KnowledgeGraph(torch.cat([triples[s] for s in SPLITS]), num_entities, num_relations,
                                protocol.inverse_edges)
    Lmax = max(max(protocol.lengths(s), default=1) for s in SPLITS)
    seen: dict[int, set[bytes]] = {}
    parts = []
    for si, split in enumerate(SPLITS):
        tri = triples[split]
        # length-1 paths: the split's own triples, as (h, r, t) rows
        parts.append((si, 1, tri[:, [0, 1, 2]]))
        seen.setdefault(1, set()).update(_key_set(tri))
        graph = train_graph if split == "train" else full_graph
        for L in protocol.lengths(split):
            if L < 2:
                continue
            rows = sample_unique_paths(graph, L, protocol.count(split, len(tri)), seen.setdefault(L, set()), g,
                                       progress=prog)
            parts.append((si, L, rows))
    prog.close()
    heads, rels, lengths, tails, split_ids = [], [], [], [], []
    for si, L, rows in parts:
        heads.append(rows[:, 0])
        tails.append(rows[:, L + 1])
        r = torch.zeros(len(rows), Lmax, dtype=torch.long)
        r[:, :L] = rows[:, 1:L + 1]
        rels.append(r)
        lengths.append(torch.full((len(rows),), L, dtype=torch.long))
        split_ids.append(torch.full((len(rows),), si, dtype=torch.long))
    return {"heads": torch.cat(heads), "rels": torch.cat(rels), "lengths": torch.cat(lengths),
            "tails": torch.cat(tails), "split": torch.cat(split_ids)}


# -- the dataset -----------------------------------------------------------------------------------------
class PathQueryDataset(torch.utils.data.Dataset):
    """OGB-style path-query dataset (see the module docstring for the names).

    ``dataset[i]`` is a dict ``{"head", "rels" [Lmax], "length", "tail"}`` of long tensors (``rels`` is
    0-padded beyond ``length``; ids ``≥ num_relations`` are reciprocal relations).

    Options: ``url``/``checksum`` (fb15k237-paths download), ``raw_dir`` (where the source files are),
    ``protocol`` (a :class:`PathProtocol` overriding the generator settings), ``verify_stats`` (check the
    published FB15k-237 sizes), ``rebuild`` (ignore any cache), ``force`` (``rebuild`` and download the
    sources again; what ``scgbench data NAME --force`` does), ``progress`` (progress lines on stderr for a
    long build).
    """

    def __init__(self, name: str, root: str | None = None, *, protocol: PathProtocol | None = None,
                 url: str | None = None, checksum: str | None = None, raw_dir: str | None = None,
                 verify_stats: bool | None = None, rebuild: bool = False, force: bool = False,
                 progress: bool = True) -> None:
        if name not in SPECS:
            raise KeyError(f"unknown path dataset {name!r}; choose from {sorted(SPECS)}")
        self.name = name
        self.spec = SPECS[name]
        self.eval_protocol = self.spec.eval_protocol
        self.protocol = protocol or self.spec.protocol
        self.dir = data_root(root) / name
        self.raw_dir = Path(raw_dir) if raw_dir else self.dir / "raw"
        self._url, self._checksum = url, checksum
        self._verify = (url in (None, FB15K237_URL)) if verify_stats is None else verify_stats
        self._force, self._progress = force, progress
        sources = self._sources()
        params = self._params(sources)
        self.cache_path, self.meta_path = self.dir / "processed" / "data.pt", self.dir / "processed" / "meta.json"
        data = None if (rebuild or force) else self._load_cache(params)
        if data is None:
            data = self._build(sources)
            buf = io.BytesIO()
            torch.save(data, buf)
            raw = buf.getvalue()
            atomic_write_bytes(self.cache_path, raw)
            # written second: a build interrupted in between leaves a meta.json whose sha256 does not match
            atomic_write_json(self.meta_path, {"params": params, "data_sha256": hashlib.sha256(raw).hexdigest(),
                                               "data_bytes": len(raw), "summary": _summary(data)})
        self._set(data)

    def _load_cache(self, params: dict) -> dict | None:
        """The cached build if it is valid for ``params``; otherwise None after a warning naming the file
        and what is wrong with it (the caller rebuilds)."""
        cache, meta_path = self.cache_path, self.meta_path
        if not cache.exists() and not meta_path.exists():
            return None
        if not cache.exists() or not meta_path.exists():
            missing = cache if not cache.exists() else meta_path
            log.warning("KG cache %s is incomplete (%s missing); rebuilding it from the sources", cache.parent,
                        missing.name)
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            log.warning("KG cache %s is corrupt (%s); rebuilding it from the sources", meta_path, e)
            return None
        if meta.get("params") != params:
            log.warning("KG cache %s is stale: built with other parameters (%s); rebuilding it from the sources",
                        cache, _diff(meta.get("params"), params))
            return None
        raw = cache.read_bytes()
        if len(raw) != meta.get("data_bytes") or hashlib.sha256(raw).hexdigest() != meta.get("data_sha256"):
            log.warning("KG cache %s is corrupt: %d bytes with sha256 %s, %s records %s bytes with sha256 %s; "
                        "rebuilding it from the sources", cache, len(raw), hashlib.sha256(raw).hexdigest()[:16],
                        meta_path.name, meta.get("data_bytes"), str(meta.get("data_sha256"))[:16])
            return None
        try:
            data = torch.load(io.BytesIO(raw), weights_only=True)
        except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:  # checksum fine, loader not
            log.warning("KG cache %s cannot be read (%s); rebuilding it from the sources", cache, e)
            return None
        return data

    # -- construction --------------------------------------------------------------------------------
    def _sources(self) -> dict[str, Path]:
        src = self.spec.source
        if src == "fb15k237":
            return fetch_fb15k237(self.raw_dir, self._url or FB15K237_URL, self._checksum, force=self._force)
        if src.startswith("pykeen:"):
            d = Path(self.raw_dir) if (self.raw_dir / "train.txt").exists() else pykeen_dataset_dir(src[7:])
            return {s: d / f"{s}.txt" for s in SPLITS}
        return fetch_guu(self.name, self.raw_dir, self._url, force=self._force)

    def _params(self, sources: dict[str, Path]) -> dict:
        params = {"name": self.name, "format_version": FORMAT_VERSION, "kind": self.spec.kind,
                  "protocol": asdict(self.protocol) if self.spec.kind == "generated" else None,
                  "sources": {s: {"file": p.name, "md5": file_digest(p)} for s, p in sorted(sources.items())}}
        return json.loads(json.dumps(params))  # JSON-normalised (tuples → lists) to compare with meta.json

    def _build(self, sources: dict[str, Path]) -> dict:
        if self.spec.kind == "guu":
            return self._build_guu(sources)
        named = {s: read_triple_names(sources[s]) for s in SPLITS}
        entities, relations = _vocab(named)
        if self._verify and self.spec.source == "fb15k237":
            got = {**{s: len(v) for s, v in named.items()}, "entities": len(entities), "relations": len(relations)}
            if got != FB15K237_STATS:
                raise PathFileError(f"{self.raw_dir}: FB15k-237 files have sizes {got}, expected "
                                    f"{FB15K237_STATS}; the download is corrupt: run `scgbench data fb15k237-paths "
                                    f"--force --root {self.dir.parent}` to download and extract it again")
        e2i = {e: i for i, e in enumerate(entities)}
        r2i = {r: i for i, r in enumerate(relations)}
        triples = {s: torch.tensor([(e2i[h], r2i[r], e2i[t]) for h, r, t in named[s]], dtype=torch.long)
                   for s in SPLITS}
        paths = generate_path_splits(triples, len(entities), len(relations), self.protocol, progress=self._progress)
        return {"entities": entities, "relations": relations, "graph": torch.cat([triples[s] for s in SPLITS]),
                **paths}

    def _build_guu(self, sources: dict[str, Path]) -> dict:
        rows = {s: read_path_names(sources[s]) for s in SPLITS}
        # base graph = all length-1 paths of all files (Guu et al. 2015 release the graph this way)
        base = []
        for s in SPLITS:
            for h, rs, t, _ in rows[s]:
                if len(rs) == 1:
                    r = rs[0]
                    base.append((t, r[2:], h) if r.startswith("**") else (h, r, t))
        if not base:
            raise PathFileError(f"{sources['train']}:0: no length-1 paths, so no base graph can be built")
        entities, relations = _vocab({"all": base})
        e2i = {e: i for i, e in enumerate(entities)}
        r2i = {r: i for i, r in enumerate(relations)}
        enc = {s: encode_paths(rows[s], e2i, r2i, sources[s]) for s in SPLITS}
        Lmax = max(e["rels"].shape[1] for e in enc.values())
        out = {k: torch.cat([enc[s][k] for s in SPLITS]) for k in ("heads", "lengths", "tails")}
        out["rels"] = torch.cat([torch.nn.functional.pad(enc[s]["rels"], (0, Lmax - enc[s]["rels"].shape[1]))
                                 for s in SPLITS])
        out["split"] = torch.cat([torch.full((len(enc[s]["heads"]),), i, dtype=torch.long)
                                  for i, s in enumerate(SPLITS)])
        graph = torch.tensor([(e2i[h], r2i[r], e2i[t]) for h, r, t in base], dtype=torch.long)
        return {"entities": entities, "relations": relations, "graph": graph, **out}

    def _set(self, data: dict) -> None:
        self.entities: list[str] = data["entities"]
        self.relations: list[str] = data["relations"]
        self.num_entities, self.num_relations = len(self.entities), len(self.relations)
        self.heads, self.rels, self.lengths = data["heads"], data["rels"], data["lengths"]
        self.tails, self.split = data["tails"], data["split"]
        self.graph = KnowledgeGraph(data["graph"], self.num_entities, self.num_relations)
        for i, s in enumerate(SPLITS):
            if not bool((self.split == i).any()):
                raise PathFileError(f"{self.dir}: split {s!r} is empty")

    # -- OGB-style accessors -------------------------------------------------------------------------
    def get_idx_split(self) -> dict[str, Tensor]:
        """``{"train", "valid", "test"}`` → indices into this dataset."""
        return {s: torch.nonzero(self.split == i).squeeze(1) for i, s in enumerate(SPLITS)}

    def get_length_split(self, split: str) -> dict[int, Tensor]:
        """Indices of ``split`` grouped by path length (number of relations)."""
        idx = self.get_idx_split()[split]
        lens = self.lengths[idx]
        return {int(L): idx[lens == L] for L in torch.unique(lens)}

    def triples(self) -> Tensor:
        """[T, 3] all base triples (the full graph used for filtering / Guu positives)."""
        return self.graph.triples

    @property
    def max_length(self) -> int:
        return int(self.lengths.max())

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"head": self.heads[i], "rels": self.rels[i], "length": self.lengths[i], "tail": self.tails[i]}

    def __repr__(self) -> str:
        return f"PathQueryDataset({self.name!r}, {_summary(self.__dict__ | {'entities': self.entities})})"


def _summary(data: dict) -> str:
    split, lengths = data["split"], data["lengths"]
    parts = []
    for i, s in enumerate(SPLITS):
        m = split == i
        ls = torch.unique(lengths[m]).tolist()
        parts.append(f"{s} {int(m.sum())} paths (lengths {ls[0]}-{ls[-1]})" if ls else f"{s} 0 paths")
    return (f"{len(data['entities'])} entities, {len(data['relations'])} relations; " + "; ".join(parts))


def _diff(old: dict | None, new: dict) -> str:
    if not isinstance(old, dict):
        return "no recorded parameters"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)[:300]
