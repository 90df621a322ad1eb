"""Drift monitoring: what devices see, compared with what each model version was registered on."""
