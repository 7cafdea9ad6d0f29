"""Using trained models: finding one in the store (``logged_models``), making
image files into its input (``images``), predicting (``predict``) and the
model registry (``registry``)."""
