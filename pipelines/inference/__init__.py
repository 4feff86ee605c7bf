"""A trained model in use: its saved form (card + weights) and heatmaps → keypoints. No Ray, no MLflow."""
