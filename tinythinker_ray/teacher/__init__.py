"""Teacher distillation: prompts (prompt.py), reply filters (filters.py), stage rows (stages.py), driver
(distill.py: `tinythinker teach`)."""
