"""The Model Hub: built-in models and where model artifacts live."""
