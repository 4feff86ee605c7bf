"""Composition layer of shg.

Stage configs, the Ray Train loop, PCKh metrics, evaluation and prediction, MLflow tracking and
the model registry (the only code that imports mlflow), the workflow that chains the stages, Ray
job submission and scheduling, and the `shg` command line. May import `shg_model` and
`dataprep`; neither of them imports anything from here.
"""
