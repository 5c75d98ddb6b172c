"""Support code for the sequence-classification notebook (08-seq_classification)."""
