"""One router per console page (sign-in, fleet, vehicle, users)."""
