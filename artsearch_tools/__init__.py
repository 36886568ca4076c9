"""The tools: the `artsearch` command (ingest, catalogues, evaluation, retraining, the demo launcher),
the model export and the influence importers. They import the services and the core package (artsearch);
nothing in artsearch/ or services/ imports them (pyproject.toml [tool.importlinter])."""
