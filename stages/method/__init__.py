"""The CLIMD method itself (difficulty measures and probes, Eq. 1-4; the power law, Eq. 5-6; pacing,
Eq. 7) and the scikit-learn reference models it is compared with."""
