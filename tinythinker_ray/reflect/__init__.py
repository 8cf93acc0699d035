"""Phase 2: self-reflection rounds (self-generated preference pairs + iterative RPO)."""
