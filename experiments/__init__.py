"""The shipped experiments, YAML only: installed with the engine so `squeezenas run quickstart` (or
`engine.config.load("quickstart")`) finds them from any folder. This file only makes the folder a package."""
