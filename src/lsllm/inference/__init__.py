"""The inference core, below training and the prediction front ends: precision, loading a saved model for
inference, batched inference, and the prediction rows every method writes."""
