"""The domain: images, their states and rules, and the ports the services need. Stdlib only."""
