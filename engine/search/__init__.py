"""Search strategies: evolution (pymoo algorithms and operators, fronts), the Optuna trial store, and DNAS with its
lambda sweep."""
