"""The registry: every checkpoint of the DeepLab model zoo, declared once in ``registry.yaml``.

In flow order: :mod:`~zoo_cli.registry.scales` (how an eval setting is written), :mod:`~zoo_cli.registry.types`
(a checkpoint and its reported eval rows), :mod:`~zoo_cli.registry.schema` (the YAML validated into them) and
:mod:`~zoo_cli.registry.catalog` (load, look up, filter, sort).
"""
