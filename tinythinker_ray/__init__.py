"""tinythinker-ray: TinyThinker reasoning distillation (recall -> analyze -> summarize) on Ray."""

__version__ = "0.1.0"
