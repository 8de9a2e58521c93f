"""CLOSE (data): clean synthetic training data so that only what is safe to train on is kept.

`openparity data clean`: quality filters, decontamination against the harness's benchmarks,
PII scrubbing, exact and MinHash near-duplicate removal, with every record accounted for.
"""
