"""Host-side chunk loop: output allocation, forward and backward passes."""
