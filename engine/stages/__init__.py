"""The stages of a run, one module each, named as the stage; engine.runner executes them in order."""
