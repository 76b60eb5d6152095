"""Leaderboard: run (model, task, seed) cells through lm-eval resumably, aggregate, validate, render."""
