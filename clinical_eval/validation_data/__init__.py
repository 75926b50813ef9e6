"""Hand-labelled validation reports of the CheXpert-rule labeler (data only; see README.md)."""
