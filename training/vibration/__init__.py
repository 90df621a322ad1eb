"""Vibration anomaly models: windowed features, models trained on normal data only, threshold, explanations.

Stages, in the order the flow `retrain-anomaly-model` runs them: dataset (split + features) ->
train (fit + threshold) -> evaluate (the honest protocol) -> card (what export writes into the file).
"""
