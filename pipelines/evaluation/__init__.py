"""PCKh, batch evaluation of a saved model, prediction on images, plots."""
