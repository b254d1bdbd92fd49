"""A Hydra sweeper that searches with Optuna (>= 4) and can resume a search from its storage."""
