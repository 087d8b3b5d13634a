"""Latency in a run: the meter that measures on the experiment's device, and the fitted latency model."""
