"""What every Redstone daemon needs from its service manager: sd_notify and log formats."""
