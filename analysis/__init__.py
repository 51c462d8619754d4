"""Pure statistics: numpy, scipy and PyMC only; nothing here knows about HTTP or storage.

conjugate.py (Beta and Normal posteriors, exact integrals) → summary.py (each arm's rate, lift
and probabilities) and stratified.py (comparisons within allocation periods, SRM) →
stopping.py (the recommendation, guardrails); contrasts.py (a factor level against its
baseline), evidence.py and discovery.py (verdicts, the meta-analysis, discoveries among a
publication's comparisons), pymc_models.py (the hierarchical and factorial models), curves.py
(rate curves for the pages).
"""
