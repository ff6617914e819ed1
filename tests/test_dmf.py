"""``reproduce dmf`` (deep matrix factorization, ACHL19): the quick run end to end, the
report traced to its JSON, resume after an interrupt, the verdicts' power, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from overparam_jax.checkpoint import CheckpointDir
from overparam_jax.cli import main
from overparam_jax.experiments import dmf as D
from overparam_jax.experiments.report import untraced_numbers

pytest.importorskip("cvxpy", reason="cvxpy (the [dmf] extra) is not installed")

ROOT = Path(__file__).resolve().parents[1]
TINY = D.DMFConfig(dim=8, rank=1, observations=(12, 30), depths=(1, 2), init_stds=(1e-3,), seeds=(0,),
                   horizon=20.0, records=10, num_singular_values=3, shown_observations=12, probe_points=2,
                   verdict_std=1e-3)


def _finding(analysis, start):
    (finding,) = [f for f in analysis["findings"] if f["observation"].startswith(start)]
    return finding


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("dmf")
    assert main(["reproduce", "dmf", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out, json.loads((out / "dmf_results.json").read_text())


def test_quick_run_writes_its_outputs_with_configuration_and_versions(quick):
    out, doc = quick
    for name in ("dmf_error.png", "dmf_singular_values.png", "dmf_effective_rank.png", "dmf_summary.md"):
        assert (out / name).stat().st_size > 0, name
    assert doc["config"] == json.loads(json.dumps(D.DMFConfig(**D._QUICK)._asdict()))
    assert {"jax", "overparam_jax", "utc_time"} <= set(doc["metadata"])
    S, M, C = (len(doc["config"][k]) for k in ("seeds", "observations", "init_stds"))
    T = doc["config"]["records"] + 1
    assert np.shape(doc["depths"]["3"]["error"]) == (S, M, C, T)
    assert np.shape(doc["depths"]["3"]["singular_values_at_shown_observations"]) == (
        S, C, T, doc["config"]["num_singular_values"])
    assert np.shape(doc["nuclear_norm_error"]) == (S, M)


def test_the_probe_sees_gd_approach_the_singular_value_dynamics_at_first_order(quick):
    """GD is gradient flow up to O(eta): a 10x smaller step makes the gap to [ACHL19 Thm 3]
    about 10x smaller (a wrong exponent or a missing factor N would leave an O(1) gap)."""
    finding = _finding(quick[1]["analysis"], "Theorem 3")
    assert 5 < finding["gap_ratio_median"] < 20
    assert finding["gap_max"] < 0.2


def test_summary_and_readme_paragraph_print_only_numbers_of_the_document(quick):
    out, doc = quick
    summary = (out / "dmf_summary.md").read_text()
    paragraph = D.readme_paragraph(doc)
    assert paragraph.startswith("- `reproduce dmf` — ")
    for text in (summary, paragraph):
        assert untraced_numbers(text, doc, signed=True) == []
    wrong = paragraph.replace(f"{len(doc['config']['seeds'])} seeds", "7351 seeds", 1)
    assert untraced_numbers(wrong, doc, signed=True) == ["7351"]


def test_readme_block_is_the_paragraph_of_the_committed_json():
    document = json.loads((ROOT / "docs" / "figures" / "dmf_results.json").read_text())
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- dmf:begin -->\n", "\n<!-- dmf:end -->"
    assert readme.count(begin) == 1 and readme.count(end) == 1
    assert readme[readme.index(begin) + len(begin): readme.index(end)] == D.readme_paragraph(document)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny run uninterrupted, checkpointed like the command line runs it (in chunks: a
    single scan over all steps compiles differently and may differ in the last bit)."""
    path = tmp_path_factory.mktemp("tiny") / "ckpt"
    return D.run_dmf(TINY, checkpoint=CheckpointDir(path, experiment="dmf", config=TINY._asdict()))


def test_an_interrupted_run_resumes_bit_for_bit(tiny, tmp_path):
    ckpt = lambda: CheckpointDir(tmp_path / "ckpt", experiment="dmf", config=TINY._asdict())  # noqa: E731

    def interrupt(p):
        if p.stage.startswith("depth 2") and p.done >= p.total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        D.run_dmf(TINY, progress=interrupt, checkpoint=ckpt())
    resumed = D.run_dmf(TINY, checkpoint=ckpt())
    np.testing.assert_array_equal(resumed.nuclear_norm_error, tiny.nuclear_norm_error)
    for N in TINY.depths:
        for field in ("loss", "error", "effective_rank", "singular_values"):
            np.testing.assert_array_equal(getattr(resumed.depths[N], field), getattr(tiny.depths[N], field))
        assert resumed.depths[N].probe == tiny.depths[N].probe


def test_the_nuclear_norm_verdict_can_fail(tiny):
    """The first finding compares the deep errors with the baseline: a perfect baseline makes
    it fail, a useless one makes it hold."""
    verdict = lambda nn: _finding(D._analysis(tiny._replace(nuclear_norm_error=nn)), "at the fewest")["verdict"]  # noqa: E731
    assert verdict(np.zeros_like(tiny.nuclear_norm_error)) == "does not hold"
    assert verdict(np.full_like(tiny.nuclear_norm_error, 10.0)) == "holds"


def test_the_effective_rank_verdict_reads_the_order_of_the_depths(tiny):
    d1, d2 = tiny.depths[1], tiny.depths[2]
    swapped = {1: d1._replace(effective_rank=d2.effective_rank), 2: d2._replace(effective_rank=d1.effective_rank)}
    ordered = _finding(D._analysis(tiny), "the effective rank")
    reversed_ = _finding(D._analysis(tiny._replace(depths=swapped)), "the effective rank")
    assert ordered["verdict"] == "holds" and reversed_["verdict"] == "does not hold"


@pytest.mark.parametrize("change, match", [
    (dict(rank=0), "rank"), (dict(observations=(0, 5)), "observations"), (dict(shown_observations=7), "shown"),
    (dict(depths=(0, 1)), "depths"), (dict(init_stds=(-1.0,)), "init_stds"), (dict(horizon=0.0), "horizon"),
])
def test_bad_configurations_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        D.run_dmf(TINY._replace(**change))


def test_the_command_line_has_no_steps_option_for_dmf(capsys):
    """Its horizon is a gradient-flow time, the same at every depth: ``--steps`` is refused
    by the parser, and by ``configure`` when called from Python."""
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "dmf", "--quick", "--steps", "5", "--no-progress"])
    assert exit_.value.code == 2 and "unrecognized arguments: --steps 5" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--seeds"):
        D.EXPERIMENT.configure(quick=True, steps=5, seeds=None, seed=None)
