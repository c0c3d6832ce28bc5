"""Finance: mid-price trend classification from limit order books (TLOB, MLPLOB, DeepLOB)."""
