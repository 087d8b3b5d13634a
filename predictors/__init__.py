"""What a network is predicted to cost or score: genotype features and latency predictors."""
