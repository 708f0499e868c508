"""The pipeline language: models, loading with every problem located, validation, the task
graph, templates, parameters, rendering and dry runs."""
