"""Models: reference LightGBM, EasyEnsemble, BalanceCascade, blending, stacking, metrics."""
