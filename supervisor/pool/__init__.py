"""Scheduling: the RunnerPool owns every runner; placement decides launch parameters (pure)."""
