"""The crystal GPT and its sampler: token grammar, model, constrained sampling, crystals built from tokens."""
