"""The pandas-free CSV helpers and rank statistics, against pandas and scipy."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata, spearmanr

from stages.core import tables


@pytest.mark.parametrize("seed", range(5))
def test_ranks_and_spearman_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, 40).astype(float)          # many ties
    b = a + rng.normal(0, 2, 40).round(0)
    np.testing.assert_array_equal(tables.ranks(a), rankdata(a))
    assert tables.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert np.isnan(tables.spearman(np.ones(5), np.arange(5)))


def test_csv_round_trip_matches_pandas(tmp_path):
    cols = {"id": np.array(["a b", 'q"x', "c,d", "e"], dtype=object), "label": np.array([0, 1, 1, 0]),
            "r": np.array([0.5, 1e-9, np.nan, -3.25])}
    path = tmp_path / "t.csv"
    path.write_text(tables.to_csv(cols))
    theirs = pd.read_csv(path, dtype={"id": str})
    assert theirs["id"].tolist() == cols["id"].tolist() and theirs["label"].tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(theirs["r"], cols["r"])
    back = tables.read_csv(path, {"label": int, "r": float})
    assert back["id"].tolist() == cols["id"].tolist() and back["label"].dtype == np.int64
    np.testing.assert_allclose(back["r"], cols["r"])
