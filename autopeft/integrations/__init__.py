"""autopeft's search parts for people who drive their fine-tunes with other tools (Ray Tune)."""
