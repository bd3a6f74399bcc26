"""Vehicle-state preconditions from the vehicle's CAN bus (python-can + cantools)."""
