"""The dashboard's estimator × benchmark matrix: every registered estimator has a row, with its rank where
it has rows, "–" where it has none yet, and "n/a" (with the contract's reason) where it cannot serve the benchmark."""

import re
from pathlib import Path

from scgbench.estimators import registry
from scgbench.leaderboard.site import build_site

REPO = Path(__file__).resolve().parents[1]


def _matrix(html: str) -> dict[str, dict[str, tuple[str, str]]]:
    table = html[html.index('id="matrix"'):]
    table = table[:table.index("</table>")]
    heads = [re.sub("<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", table)]
    out = {}
    for row in re.findall(r'<tr class="run">(.*?)</tr>', table):
        cells = re.findall(r'<td([^>]*)>(.*?)</td>', row)
        name = re.sub("<[^>]+>", "", cells[0][1])
        out[name] = {h.split(" ")[0]: (re.sub("<[^>]+>", "", text), attrs) for h, (attrs, text) in
                     zip(heads[1:], cells[1:])}
    return out


def test_every_registered_estimator_has_a_row_with_its_rank_or_the_reason_it_has_none(tmp_path):
    build_site(tmp_path / "site", REPO / "results")
    m = _matrix((tmp_path / "site" / "index.html").read_text())
    assert set(m) == set(registry())
    assert m["gumbel"]["discrete-vae"][0].startswith("#")                    # ranked where it has rows
    text, attrs = m["direct"]["mnist-addition"]
    assert text == "n/a" and "cost-oracle" in attrs                           # the contract's reason, on hover
    assert m["igr"]["kg-paths"][0] == "n/a"
    assert m["gst"]["mnist-addition"][0] in ("–",) or m["gst"]["mnist-addition"][0].startswith("#")
