"""Materials generation, by stage: ``generation`` (tokenizer, GPT, sampler, build), ``checks`` (validity,
energies, hull, battery metrics, the bundled references), ``discovery`` (campaigns, the Ray engine, reward
fine-tuning), ``training`` (corpus and training loop); ``pipeline`` is the page's and the CLI's one code path."""
