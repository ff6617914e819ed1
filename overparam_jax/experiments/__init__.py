"""Paper experiments (THEORY.md §8): one module per experiment, E1, E2 and E3."""
