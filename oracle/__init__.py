"""Differential oracles: matrix/'s verdicts against Synapse's, Synapse as a test oracle only."""
