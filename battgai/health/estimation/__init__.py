"""SOH estimators, the augmentation experiment, and the transfer to a researcher's own cells."""
