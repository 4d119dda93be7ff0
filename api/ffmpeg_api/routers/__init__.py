"""One router per API surface."""
