"""The fleet simulator: real submit/claim/complete scripts, simulated GPU machines (#16)."""
