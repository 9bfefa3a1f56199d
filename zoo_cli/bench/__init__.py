"""``zoo bench`` and ``zoo report``: measuring frozen graphs beside the registry's reported numbers, and the
tables and plot built from the stored results. In flow order: ``settings`` (options, settings, input size),
``latency`` and ``machine`` (timing, where it ran), ``accuracy`` (mIOU through the eval engine), ``compare``
(reported vs measured), ``store`` (results and their files), ``measure`` (one graph), ``sweep`` (a checkpoint
or every downloaded one), then ``picking`` (which stored results a report uses), ``plot`` and ``report``."""
