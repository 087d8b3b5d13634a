"""Search strategies: NSGA-II (pymoo operators, fronts), the Optuna trial store, and DNAS with its lambda sweep."""
