"""Choosing how to train before training: `advisor` (size x similarity -> a transfer plan) and
`lr_finder` (the learning-rate range test)."""
