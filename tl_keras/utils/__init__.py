"""Small helpers every step uses: argument checks, atomic file writes, batched NumPy loops."""
