"""The learning check's world: a seeded made-up world and its questions (synth.py), and the teacher that
reasons over it by rule (rules.py, `teacher.backend: rules`)."""
