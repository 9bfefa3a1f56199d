"""One module per subcommand; each exposes ``command`` (a click command). Keep imports light here:
TensorFlow is imported only inside the functions that run a model."""
