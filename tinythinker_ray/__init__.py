"""tinythinker-ray: TinyThinker reasoning distillation (recall -> analyze -> summarize) on Ray."""

__version__ = "0.1.0"

from . import console

console.install()  # the package's progress lines reach stdout (console.py says how to quiet them)
