"""Evaluation: run a frozen graph on images or on a dataset split and score it as research/deeplab does.

Modules in flow order: ``settings`` (run options and the eval setting a run uses, results folders),
``datasets`` (raw VOC/Cityscapes/ADE20K layouts), ``palettes`` (class names and colours), ``classes`` (the
classes and ignore label a checkpoint is scored on), ``predictors`` (the Predictor protocol, the graph as
exported, picking a predictor), ``multiscale`` (multi-scale/flip inference on re-targeted graphs, with
``resize`` its numpy bilinear resize), ``rewritten`` (the graph at another output stride, guarded),
``metrics`` (confusion matrix, mIOU), ``image_job`` (``zoo eval --images``), ``dataset_job`` (``zoo eval
--data-dir``) and ``results`` (the saved result, merging shards).
"""
