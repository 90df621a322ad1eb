"""The team stack: PostgreSQL, an S3 object store, MLflow, Prefect and the edge server on one machine."""
