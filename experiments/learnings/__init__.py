"""The learnings registry: what experiments showed, for whom, and how sure we are.

One module per concern, data flowing one way, from an experiment's results to the registry
and back into new experiments:
- record.py: what a learning is: the notes a publication writes (a stable code beside each
  sentence), the one-sentence summary, a hand-written learning, one learning, the flat record.
- comparisons.py: where a publication's comparisons come from (the conjugate results, or a
  converged PyMC job's).
- publish.py: publishing an experiment's learnings from those comparisons, judged together,
  in one transaction.
- search.py: searching the registry (filters, tags, text, sort), over store.py, the SQL that
  differs by database.
- evidence.py: the pooled effect of a factor level across experiments (a meta-analysis).
- priors.py: the registry's evidence as the prior of a new experiment.
"""
