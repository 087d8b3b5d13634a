"""How a run goes: configuration, stages and the `python -m engine.run` entry."""
