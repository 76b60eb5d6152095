"""Test-time training (TTT) for finemed-eval: retrieve a reasoning example per question, train briefly, answer, restore."""
