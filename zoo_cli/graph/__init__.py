"""Frozen DeepLab graphs: reading, understanding, running and rewriting them (the only subpackage that touches
TensorFlow, always through ``tf_import``). Modules in flow order: ``tf_import`` (the one TensorFlow import and
session factory), ``tf_errors`` (TensorFlow errors in one line), ``loading`` (read and import a .pb),
``graphdef`` (GraphDef helpers: names, index, static shapes, edits), ``geometry`` (DeepLab's size and stride
rules), ``crop_pattern`` (where a graph keeps its crop), ``info`` (GraphInfo, ``zoo info --inspect``),
``runner`` (FrozenGraphModel: one session, every image), ``memory`` (does a crop fit in memory),
``retarget`` (the graph at another crop), ``stride_edit`` and ``output_stride`` (the graph at another output
stride), ``flops`` (Multiply-Adds and parameters).
"""
