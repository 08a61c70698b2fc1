"""Pure array kernels: JAX scans for the HMM and numba storage codecs."""
