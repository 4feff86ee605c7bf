"""CPU data work for shg: MPII records, crop geometry, heatmaps, augmentation, parquet prep.

Imports no torch and no mlflow. Submodules are imported explicitly (nothing happens here).
"""
