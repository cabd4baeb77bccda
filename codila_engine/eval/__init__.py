"""Evaluation: HumanEval-Infilling tasks and a sandbox that runs their tests."""
