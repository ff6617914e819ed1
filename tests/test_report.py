"""The experiments' shared report helpers (experiments/report.py) and the trajectory readers
of overparam_jax.analysis that the reports use (last/largest finite value, moving average).

Independent references: the exact markdown text of small tables and documents, written
out by hand; step counts and percentages in the notation of the summaries; the indices of
a log-spaced thinning worked out from 10^(3k/4); plain Python loops for the moving
averages and the finite last/largest values.
"""

import math

import numpy as np
import pytest

from overparam_jax.analysis import last_finite, max_finite, moving_average
from overparam_jax.experiments import report

NAN, INF = float("nan"), float("inf")


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------


def test_markdown_table_exact_text():
    lines = report.markdown_table(["run", "lr", "loss"], [["GD depth 1", "0.01", "0.1086"], ["Adam", "0.1", "—"]],
                                  "lrr")
    assert "\n".join(lines) == ("| run | lr | loss |\n"
                                "|---|---:|---:|\n"
                                "| GD depth 1 | 0.01 | 0.1086 |\n"
                                "| Adam | 0.1 | — |")
    assert report.markdown_table(["a"], [], "l") == ["| a |", "|---|"]  # a header without rows


@pytest.mark.parametrize(("header", "rows", "align", "match"), [
    (["a", "b"], [["1", "2"]], "l", "`align` must have one letter l or r per column"),
    (["a", "b"], [["1", "2"]], "lc", "`align` must have one letter l or r per column"),
    (["a", "b"], [["1", "2"], ["3"]], "lr", r"Every row must have 2 cells, but \['3'\] has 1"),
])
def test_markdown_table_refuses_ragged_input(header, rows, align, match):
    with pytest.raises(ValueError, match=match):
        report.markdown_table(header, rows, align)


def test_markdown_joins_blocks_with_one_blank_line_and_drops_empty_ones():
    table = report.markdown_table(["net", "acc."], [["baseline", "90.90 %"]], "lr")
    text = report.markdown("# E3", "Setup.", table, [], "", ["line 1", "line 2"], "Times.")
    assert text == ("# E3\n\nSetup.\n\n| net | acc. |\n|---|---:|\n| baseline | 90.90 % |\n\n"
                    "line 1\nline 2\n\nTimes.\n")


@pytest.mark.parametrize(("value", "spec", "expected"), [
    (None, ".4g", "—"),
    (0.123456, ".4g", "0.1235"),
    (1234567.0, ".4g", "1.235e+06"),
    (np.float64(2.5), ".3g", "2.5"),
    (np.float32(0.25), ".1%", "25.0%"),
    (1000, ".4g", "1000"),  # integers as they are: an iteration count is never rounded
    (123456, ".4g", "123456"),
    ("never", ".4g", "never"),
    (NAN, ".4g", "nan"),
])
def test_format_value(value, spec, expected):
    assert report.format_value(value, spec) == expected


@pytest.mark.parametrize(("steps", "expected"), [
    (0, "0"), (240, "240"), (999, "999"), (1000, "1k"), (1500, "1500"), (250_000, "250k"),
    (1_000_000, "1·10⁶"), (3_000_000, "3·10⁶"), (1_500_000, "1500k"),
])
def test_format_steps(steps, expected):
    assert report.format_steps(steps) == expected


def test_format_percent():
    assert report.format_percent(0.934) == "93.40 %"
    assert report.format_percent(0.099) == "9.90 %"
    assert report.format_percent(1.0, digits=1) == "100.0 %"


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def test_figure_panels_layout_labels_scales_and_grid():
    fig, axes = report.figure_panels(2, 3, panel_size=(5.0, 4.0), title="E0: a figure", xlabel="step",
                                     ylabel="loss", xscale="log", yscale="log", sharey=True)
    assert axes.shape == (2, 3)
    assert fig.get_size_inches().tolist() == [15.0, 8.0]
    assert fig.get_suptitle() == "E0: a figure"
    for (_, col), ax in np.ndenumerate(axes):
        assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel()) == ("log", "log", "step")
        assert ax.get_ylabel() == ("loss" if col == 0 else "")  # the first column only
        assert all(line.get_visible() for line in ax.get_xgridlines() + ax.get_ygridlines())
    assert axes[0, 0].get_shared_y_axes().joined(axes[0, 0], axes[1, 2])


def test_figure_panels_defaults_are_linear_unlabelled_and_one_row_is_still_2d():
    fig, axes = report.figure_panels(1, 1, panel_size=(6.2, 4.6), title="t", layout="constrained")
    assert axes.shape == (1, 1) and fig.get_layout_engine() is not None
    ax = axes[0, 0]
    assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel(), ax.get_ylabel()) == ("linear", "linear", "", "")


# --------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------


def test_log_spaced_indices():
    assert report.log_spaced_indices(7, points=10).tolist() == list(range(7))
    # 10^(3k/4) for k = 0..4 is 1, 5.62, 31.6, 177.8, 1000: rounded, minus one.
    assert report.log_spaced_indices(1000, points=5).tolist() == [0, 5, 31, 177, 999]
    idx = report.log_spaced_indices(100_001)
    assert idx[0] == 0 and idx[-1] == 100_000 and np.all(np.diff(idx) > 0) and idx.size <= 302
    # log-spaced: dense at the start (every index up to ~25), sparse at the end
    assert idx[:20].tolist() == list(range(20)) and idx[-1] - idx[-2] > 1000


def test_load_average(monkeypatch):
    values = report.load_average()
    assert len(values) == 3 and all(isinstance(v, float) for v in values)

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(report.os, "getloadavg", unavailable)
    assert all(math.isnan(v) for v in report.load_average())


# --------------------------------------------------------------------------------------
# The analysis helpers the reports read curves with
# --------------------------------------------------------------------------------------


def _moving_average_loop(values, window, centered):
    out = []
    for t in range(len(values)):
        lo, hi = ((max(0, t - window // 2), min(len(values), t + window // 2 + 1)) if centered
                  else (max(0, t + 1 - window), t + 1))
        out.append(sum(values[lo:hi]) / (hi - lo))
    return out


def test_moving_average_by_hand_and_against_a_loop():
    v = [1.0, 3.0, 5.0, 7.0, 9.0]
    assert moving_average(v, 2).tolist() == [1.0, 2.0, 4.0, 6.0, 8.0]
    assert moving_average(v, 3, centered=True).tolist() == [2.0, 3.0, 5.0, 7.0, 8.0]
    assert moving_average(v, 1).tolist() == v
    rng = np.random.default_rng(0)
    for n, window, centered in [(50, 7, False), (50, 7, True), (10, 25, False), (10, 4, True)]:
        x = rng.normal(size=n)
        np.testing.assert_allclose(moving_average(x, window, centered=centered),
                                   _moving_average_loop(x.tolist(), window, centered), rtol=1e-12)


def _finite_loop(row, mask, pick):
    kept = [x for x, m in zip(row, mask) if m and math.isfinite(x)]
    return pick(kept) if kept else NAN


def test_last_and_max_finite_by_hand_and_against_a_loop():
    x = np.array([[1.0, 5.0, NAN, 2.0], [INF, NAN, NAN, NAN], [3.0, -INF, 4.0, 0.5]])
    where = np.array([[True, True, True, False], [True] * 4, [True, True, False, True]])
    np.testing.assert_array_equal(last_finite(x), [2.0, NAN, 0.5])
    np.testing.assert_array_equal(max_finite(x), [5.0, NAN, 4.0])
    np.testing.assert_array_equal(last_finite(x, where), [5.0, NAN, 0.5])
    np.testing.assert_array_equal(max_finite(x, where), [5.0, NAN, 3.0])
    rng = np.random.default_rng(1)
    values = rng.normal(size=(2, 3, 8))
    values[rng.random(values.shape) < 0.3] = NAN
    values[rng.random(values.shape) < 0.1] = INF
    mask = rng.random(values.shape) < 0.7
    for got_fn, pick in ((last_finite, lambda kept: kept[-1]), (max_finite, max)):
        got = got_fn(values, mask)
        assert got.shape == (2, 3)
        expected = [[_finite_loop(values[i, j], mask[i, j], pick) for j in range(3)] for i in range(2)]
        np.testing.assert_array_equal(got, expected)
