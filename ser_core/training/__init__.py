"""Everything `ser train` (and `ser download`) needs and the serving path does not: the
training corpora and their download, the encoder-state and CNN-feature caches, the degraded
training views, fitting the emotion head and the study's CNNs, and their speaker-independent
protocols. The serving path (the nightly job `pipelines.score_calls`, `ser predict`,
`ser evaluate`, `ser_core.bundle`) never imports it; `tests/test_layering.py` checks that.
"""
