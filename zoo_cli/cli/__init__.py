"""The ``zoo`` command line: parses options, calls the library, prints; it holds no logic of its own.

:mod:`~zoo_cli.cli.app` (the group, global options, signals, errors as one line and an exit code),
:mod:`~zoo_cli.cli.options` (shared click option types), :mod:`~zoo_cli.cli.output` (JSON and the rich console),
:mod:`~zoo_cli.cli.bench_view` (bench result tables), and ``commands/``: one module per subcommand, imported
only when that subcommand runs.
"""
